/* sv-pc-filler: background load for test_powercut.sh. Threads put 1 KiB
 * objects under 1000-byte keys (bucket "fill"), so that every write adds
 * about 1 KiB to the shard state machines' LevelDB and its memtable is
 * flushed to a new table file (*.ldb) every few seconds even on a slow
 * machine. Keys cycle through KEYS_PER_THREAD names per thread, so the space
 * used stays bounded. Nothing is checked: the power-cut test checks its own
 * writers. Runs until killed or for --seconds; prints a line every 5 s.
 *
 * usage: sv-pc-filler --endpoints E --ca FILE [--threads N] [--seconds S] */
#define _GNU_SOURCE
#include <shardvault/client.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { THREADS_MAX = 64, KEY_LEN = 1000, VALUE_LEN = 1024, KEYS_PER_THREAD = 4096 };

static struct sv_client *client_;
static atomic_uint_fast64_t ok_, failed_;
static time_t end_;

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    char key[KEY_LEN + 1];
    char val[VALUE_LEN];
    memset(val, 'a' + id % 26, sizeof val);
    for (uint64_t i = 0; time(NULL) < end_; i++) {
        int n = snprintf(key, sizeof key, "t%d-%04u-", id, (unsigned)(i % KEYS_PER_THREAD));
        memset(key + n, 'k', (size_t)(KEY_LEN - n));
        key[KEY_LEN] = 0;
        if (sv_client_put(client_, "fill", key, val, sizeof val, SV_IF_ANY, NULL) == SV_OK)
            atomic_fetch_add(&ok_, 1);
        else
            atomic_fetch_add(&failed_, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *endpoints = getenv("SV_ENDPOINTS"), *ca = getenv("SV_CA");
    int threads = 8, seconds = 600;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--endpoints"))
            endpoints = argv[i + 1];
        else if (!strcmp(argv[i], "--ca"))
            ca = argv[i + 1];
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atoi(argv[i + 1]);
        else
            break;
    }
    if (!endpoints || !ca || threads < 1 || threads > THREADS_MAX || seconds < 1 || argc % 2 == 0) {
        fprintf(stderr,
                "usage: sv-pc-filler --endpoints E --ca FILE [--threads N] [--seconds S]\n");
        return 2;
    }
    struct sv_client_options o = {.endpoints = endpoints, .ca_file = ca, .deadline_ms = 10000};
    if (sv_client_open(&o, &client_) != SV_OK) {
        fprintf(stderr, "sv-pc-filler: %s\n", sv_client_errmsg());
        return 1;
    }
    end_ = time(NULL) + seconds;
    pthread_t t[THREADS_MAX];
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    uint64_t last = 0;
    while (time(NULL) < end_) {
        sleep(5);
        uint64_t ok = atomic_load(&ok_);
        printf("sv-pc-filler: %llu puts in 5 s (%llu failed in all)\n",
               (unsigned long long)(ok - last), (unsigned long long)atomic_load(&failed_));
        fflush(stdout);
        last = ok;
    }
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    sv_client_close(client_);
    return 0;
}
