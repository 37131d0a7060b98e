/* svctl-util-test: svctl's small helpers (svctl_util.c): how a key is
 * escaped for a terminal, and a JSON string. */
#define _GNU_SOURCE
#include "svctl.h"

#include "check.h"

#include <stdio.h>
#include <string.h>

static void esc_is(const char *in, const char *want)
{
    char out[SV_TEXT_ESC_MAX];
    size_t n = sv__text_esc(in, out, sizeof out);
    CHECK_MSG(strcmp(out, want) == 0 && n == strlen(want), "\"%s\": got \"%s\", want \"%s\"", in,
              out, want);
}

static void test_text_escape(void)
{
    esc_is("plain/key-1.txt", "plain/key-1.txt");
    esc_is("", "");
    esc_is("a\\b", "a\\\\b");
    /* Controls and terminal escape sequences. */
    esc_is("line\nbreak\ttab\r", "line\\x0abreak\\x09tab\\x0d");
    esc_is("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m");
    esc_is("del\x7f", "del\\x7f");
    /* Valid UTF-8 stays; C1 controls, overlong forms, surrogates, bytes of
     * no character and cut sequences are escaped byte by byte. */
    esc_is("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
           "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    esc_is("\xc2\x9b"
           "31m",
           "\\xc2\\x9b31m");
    esc_is("\xc0\xaf", "\\xc0\\xaf");
    esc_is("\xed\xa0\x80", "\\xed\\xa0\\x80");
    esc_is("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80");
    esc_is("\xff\xfe", "\\xff\\xfe");
    esc_is("cut\xe2\x82", "cut\\xe2\\x82");
    /* Characters that hide or reorder text: a bidi override, a zero-width
     * space, the BOM. */
    esc_is("a\xe2\x80\xae"
           "b",
           "a\\xe2\\x80\\xae"
           "b");
    esc_is("\xe2\x80\x8b", "\\xe2\\x80\\x8b");
    esc_is("\xef\xbb\xbf", "\\xef\\xbb\\xbf");
    /* Cut at a whole character when out is short. */
    char small[6];
    CHECK(sv__text_esc("ab\ncd", small, sizeof small) == 2 && strcmp(small, "ab") == 0);
    CHECK(sv__text_esc("abc", small, 0) == 0);
}

static void test_json_string(void)
{
    char buf[128] = "";
    FILE *f = fmemopen(buf, sizeof buf, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    sv__json_str(f, "a\"b\\c\n\x01");
    fclose(f);
    CHECK(strcmp(buf, "\"a\\\"b\\\\c\\u000a\\u0001\"") == 0);
}

static const struct sv_test tests[] = {
    {"text escape", test_text_escape},
    {"json string", test_json_string},
};

const struct sv_test_suite sv_test_suite = {
    .name = "svctl-util-test",
    SV_TEST_TABLE(tests),
};
