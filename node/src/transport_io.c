/* The transport's data path: frames through TLS to the socket, and back to the owner. */
#define _GNU_SOURCE
#include "transport_internal.h"

#include "sv_assert.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Output. */

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct sv_conn *c = w->c;
    c->inflight -= w->len;
    free(w);
    if (c->closing) {
        return;
    }
    if (status < 0) {
        sv__tp_conn_end(c, status, "write: %s", uv_strerror(status));
    } else if (c->head != NULL) {
        sv__tp_mark_dirty(c);
    }
}

/* Hand every byte of ciphertext svtls holds to the socket, through the
 * transport's one output buffer: straight away when nothing is queued before
 * it (uv_try_write); only what the socket does not take is copied into a
 * uv_write request. (A completed uv_write costs libuv an epoll_ctl: that was
 * about a third of the cluster's system calls under small puts.) */
void sv__tp_drain(struct sv_conn *c)
{
    uint8_t *buf = c->tp->out_buf;
    while (!c->hard_closed && c->connected) {
        size_t got = 0;
        sv_tls_pending_out(c->tls, buf, OUT_BUF, &got);
        if (got == 0) {
            return;
        }
        uv_buf_t b = uv_buf_init((char *)buf, (unsigned)got);
        int rc = c->inflight == 0 ? uv_try_write((uv_stream_t *)&c->tcp, &b, 1) : UV_EAGAIN;
        if (rc < 0 && rc != UV_EAGAIN) {
            sv__tp_conn_end(c, rc, "write: %s", uv_strerror(rc));
            sv__tp_hard_close(c);
            return;
        }
        size_t sent = rc > 0 ? (size_t)rc : 0;
        if (sent == got) {
            continue;
        }
        /* What the socket did not take waits in a request of its own. */
        size_t left = got - sent;
        struct wreq *w = malloc(sizeof(*w) + left);
        if (w == NULL) {
            sv__tp_conn_end(c, -ENOMEM, "out of memory for %zu bytes of output", left);
            sv__tp_hard_close(c);
            return;
        }
        memcpy(w->data, buf + sent, left);
        w->c = c;
        w->len = left;
        b = uv_buf_init((char *)w->data, (unsigned)left);
        rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
        if (rc != 0) {
            free(w);
            sv__tp_conn_end(c, rc, "write: %s", uv_strerror(rc));
            sv__tp_hard_close(c);
            return;
        }
        c->inflight += left;
    }
}

static void tls_failed(struct sv_conn *c, int rc)
{
    if (rc == SV_TLS_E_CLOSED) {
        sv__tp_conn_end(c, rc, "tls: peer closed (close_notify)");
    } else {
        const char *m = sv_tls_conn_errmsg(c->tls);
        sv__tp_conn_end(c, rc, "tls: %s", m[0] ? m : sv_tls_strerror(rc));
    }
}

/* Drop n bytes from the head of the frame queue (they went into TLS). */
static void consume(struct sv_conn *c, size_t n)
{
    c->plain_queued -= n;
    while (n > 0) {
        struct out_frame *f = c->head;
        size_t k = f->len - f->off < n ? f->len - f->off : n;
        f->off += k;
        n -= k;
        if (f->off == f->len) {
            c->head = f->next;
            if (c->head == NULL) {
                c->tail = NULL;
            }
            free(f->buf);
            free(f);
        }
    }
}

/* Push queued frames through TLS while less than limit bytes of ciphertext
 * wait for the socket; small frames share a record, large ones go in pieces
 * of at most SV_TLS_WRITE_MAX straight from their buffer. */
void sv__tp_flush(struct sv_conn *c, size_t limit)
{
    struct sv_tp *tp = c->tp;
    while (c->ready && !c->hard_closed && c->head != NULL &&
           c->inflight + sv_tls_pending_out_len(c->tls) < limit) {
        struct out_frame *f = c->head;
        size_t rem = f->len - f->off;
        const uint8_t *p;
        size_t n;
        if (rem >= COALESCE_MAX) {
            p = f->buf + f->off;
            n = rem < SV_TLS_WRITE_MAX ? rem : SV_TLS_WRITE_MAX;
        } else {
            n = 0;
            for (struct out_frame *g = f; g != NULL && n + (g->len - g->off) <= COALESCE_MAX;
                 g = g->next) {
                memcpy(tp->coalesce + n, g->buf + g->off, g->len - g->off);
                n += g->len - g->off;
            }
            p = tp->coalesce;
        }
        int rc = sv_tls_write(c->tls, p, n);
        if (rc == SV_TLS_E_BUFFER_FULL) {
            sv__tp_drain(c);
            if (c->hard_closed) {
                return;
            }
            rc = sv_tls_write(c->tls, p, n);
        }
        if (rc != 0) {
            tls_failed(c, rc);
            return;
        }
        consume(c, n);
        if (sv_tls_pending_out_len(c->tls) >= DRAIN_BATCH) {
            sv__tp_drain(c);
        }
    }
    sv__tp_drain(c);
}

/* Input. */

static void on_idle(uv_timer_t *t)
{
    struct sv_conn *c = t->data;
    struct sv_tp *tp = c->tp;
    uint64_t now = uv_now(tp->loop), quiet = now - c->active_ms;
    if (quiet < tp->idle_timeout_ms) {
        ASSERT(uv_timer_start(&c->timer, on_idle, tp->idle_timeout_ms - quiet, 0) == 0);
        return;
    }
    tp->refused[SV_TP_LIMIT_IDLE]++;
    sv__tp_conn_end(c, 0, "idle for %u s", tp->idle_timeout_ms / 1000);
}

/* The handshake finished: a connection accepted from a peer stops counting
 * as a client's; one let into the peers' reserve must be a peer's; a
 * client's is watched for idleness. Returns false once c is closing. */
static bool became_ready(struct sv_conn *c)
{
    struct sv_tp *tp = c->tp;
    c->ready = true;
    uv_timer_stop(&c->timer);
    const char *name = sv_tls_peer_name(c->tls);
    if (name != NULL) {
        snprintf(c->peer, sizeof(c->peer), "%s", name);
    }
    if (c->client && tp->cfg.is_peer != NULL && tp->cfg.is_peer(tp->cfg.arg, c)) {
        sv__tp_client_drop(tp, c);
    } else if (c->provisional && !sv__tp_client_settle(tp, c)) {
        tp->refused[SV_TP_LIMIT_CLIENTS]++;
        sv__tp_conn_end(c, -EMFILE, "connection limit: %s (%zu client connections)",
                        sv_tp_limit_name(SV_TP_LIMIT_CLIENTS), tp->n_clients);
        return false;
    }
    if (c->client) { /* (also one the share found room for by now) */
        c->active_ms = uv_now(tp->loop);
        ASSERT(uv_timer_start(&c->timer, on_idle, tp->idle_timeout_ms, 0) == 0);
    }
    if (c->head != NULL) {
        sv__tp_mark_dirty(c);
    }
    return true;
}

/* Decrypt everything svtls can, hand every frame to the owner. Returns false
 * once c is closing (also when the owner closed it or stopped the transport). */
static bool conn_decrypt(struct sv_conn *c)
{
    struct sv_tp *tp = c->tp;
    for (;;) {
        size_t n = 0;
        int rc = sv_tls_read(c->tls, tp->plain_buf, sizeof(tp->plain_buf), &n);
        if (!c->ready && sv_tls_handshake_done(c->tls) && !became_ready(c)) {
            return false;
        }
        if (rc != 0) {
            tls_failed(c, rc);
            return false;
        }
        if (n == 0) {
            break;
        }
        rc = sv_wire_feed(&c->dec, tp->plain_buf, n);
        struct sv_wire_frame f;
        while (rc == 0 && (rc = sv_wire_next(&c->dec, &f)) == 1) {
            tp->cfg.on_frame(tp->cfg.arg, c, &f);
            if (c->closing) {
                return false;
            }
            rc = 0;
        }
        if (rc < 0) {
            sv__tp_conn_end(c, rc, "wire: %s",
                            c->dec.errmsg[0] ? c->dec.errmsg : sv_wire_strerror(rc));
            return false;
        }
    }
    sv__tp_drain(c); /* handshake messages, KeyUpdate answers */
    return !c->closing;
}

void sv__tp_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct sv_conn *c = h->data;
    *buf = uv_buf_init((char *)c->tp->read_buf, sizeof(c->tp->read_buf));
}

void sv__tp_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct sv_conn *c = s->data;
    if (c->closing || nread == 0) {
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF) {
            sv__tp_conn_end(c, -ECONNRESET, "peer closed the connection");
        } else {
            sv__tp_conn_end(c, (int)nread, "read: %s", uv_strerror((int)nread));
        }
        return;
    }
    if (c->client) {
        c->active_ms = uv_now(c->tp->loop);
    }
    int rc = sv_tls_feed(c->tls, buf->base, (size_t)nread);
    if (rc == SV_TLS_E_BUFFER_FULL) {
        if (!conn_decrypt(c)) {
            return;
        }
        rc = sv_tls_feed(c->tls, buf->base, (size_t)nread);
    }
    if (rc != 0) {
        if (rc == SV_TLS_E_BUFFER_FULL) {
            sv__tp_conn_end(c, rc, "tls: input buffer full");
        } else {
            tls_failed(c, rc);
        }
        return;
    }
    conn_decrypt(c);
}
