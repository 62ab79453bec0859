/* avroskip.h: what the parts of the compiled skipper (alertfilter._avroskip) share.
 *
 * The program's node codes and the functions' contracts are described at the top of _avroskip.c.
 *
 * Parts: avroskip_walk.c (skipping and reading scalars), avroskip_history.c (the records of a
 * history array, as dicts or columns), _avroskip.c (the Python functions). The primitives of the
 * inner loop are static inline here so that every part inlines them.
 */
#ifndef ALERTFILTER_AVROSKIP_H
#define ALERTFILTER_AVROSKIP_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { OP_NULL = 0, OP_BOOL, OP_VARINT, OP_FLOAT, OP_DOUBLE, OP_BYTES, OP_FIXED, OP_ARRAY, OP_MAP, OP_UNION, OP_RECORD,
       OP_STRING, OP_ENUM };
#define MAX_DEPTH 200

/* Column kinds: what columns() makes of each wanted field. */
enum { COL_FLOAT = 0, COL_INT = 1, COL_BOOL = 2, COL_OBJECT = 3 };

typedef struct { char *data; uint8_t *mask; PyObject *list; } column_t;

typedef struct { const uint8_t *b; Py_ssize_t len; Py_ssize_t pos; const int32_t *prog; Py_ssize_t nprog; } ctx_t;

static inline int read_long(ctx_t *c, int64_t *out) {
    uint64_t v = 0; int shift = 0;
    while (1) {
        if (c->pos >= c->len || shift > 63) return -1;
        uint8_t byte = c->b[c->pos++];
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) break;
        shift += 7;
    }
    *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
    return 0;
}

static inline int advance(ctx_t *c, int64_t n) {
    if (n < 0 || n > c->len - c->pos) return -1;
    c->pos += (Py_ssize_t)n;
    return 0;
}

int avs_skip(ctx_t *c, int32_t node, int depth);
/* A varint's bytes, unread (at most 10, as read_long allows). */
static inline int skip_varint(ctx_t *c) {
    Py_ssize_t end = c->len - c->pos > 10 ? c->pos + 10 : c->len;
    while (c->pos < end) if (!(c->b[c->pos++] & 0x80)) return 0;
    return -1;
}

/* Scalars, and unions whose branch is a scalar, without a call per value: most fields of a
 * history record are ["null", "float"] and the like, and this is the skipper's inner loop. */
static inline int skip_fast(ctx_t *c, int32_t node, int depth) {
    int64_t n;
    if (node < 0 || node >= c->nprog) return -1;
    const int32_t *p = c->prog + node;
    if (p[0] == OP_UNION) {
        if (c->pos >= c->len) return -1;
        uint8_t byte = c->b[c->pos];
        if (byte & 0x80) return avs_skip(c, node, depth);  /* a union index past 63: the general way */
        c->pos++;
        n = (int64_t)((byte >> 1) ^ (~(byte & 1) + 1));
        if (n < 0 || n >= p[1]) return -1;
        node = p[2 + n];
        if (node < 0 || node >= c->nprog) return -1;
        p = c->prog + node;
    }
    switch (p[0]) {
    case OP_NULL: return 0;
    case OP_BOOL: return advance(c, 1);
    case OP_VARINT: case OP_ENUM: return skip_varint(c);
    case OP_FLOAT: return advance(c, 4);
    case OP_DOUBLE: return advance(c, 8);
    case OP_BYTES: case OP_STRING: if (read_long(c, &n)) return -1; return advance(c, n);
    default: return avs_skip(c, node, depth + 1);
    }
}

/* avroskip_walk.c */
PyObject *avs_read_scalar(ctx_t *c, int32_t node, int depth);
int32_t avs_open_array(ctx_t *c, int32_t node);
int64_t avs_next_block(ctx_t *c);
int avs_slots(ctx_t *c, int32_t item, PyObject *wanted, int key_pairs, int *slot, int32_t nfields);
/* avroskip_history.c */
PyObject *avs_items_at(ctx_t *c, int32_t node, PyObject *wanted);
PyObject *avs_columns_at(ctx_t *c, int32_t node, PyObject *wanted, PyObject *kinds);

#endif
