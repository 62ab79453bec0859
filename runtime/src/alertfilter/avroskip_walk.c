/* Skipping any Avro value, and reading one scalar (see avroskip.h for the program). */
#include "avroskip.h"

int avs_skip(ctx_t *c, int32_t node, int depth) {
    int64_t n, i;
    if (depth > MAX_DEPTH || node < 0 || node >= c->nprog) return -1;
    const int32_t *p = c->prog + node;
    switch (p[0]) {
    case OP_NULL: return 0;
    case OP_BOOL: return advance(c, 1);
    case OP_VARINT: case OP_ENUM: return skip_varint(c);
    case OP_FLOAT: return advance(c, 4);
    case OP_DOUBLE: return advance(c, 8);
    case OP_BYTES: case OP_STRING: if (read_long(c, &n)) return -1; return advance(c, n);
    case OP_FIXED: return advance(c, p[1]);
    case OP_ARRAY:
    case OP_MAP:
        while (1) {
            if (read_long(c, &n)) return -1;
            if (n == 0) return 0;
            if (n < 0) {  /* block with its byte size: skip it whole */
                int64_t size;
                if (read_long(c, &size) || advance(c, size)) return -1;
                continue;
            }
            for (i = 0; i < n; i++) {
                Py_ssize_t before = c->pos;
                if (p[0] == OP_MAP) { int64_t klen; if (read_long(c, &klen) || advance(c, klen)) return -1; }
                if (skip_fast(c, p[1], depth + 1)) return -1;
                /* an item that took no byte (null, an empty record) reads nothing: nor will the
                 * rest, so a count of 2^62 of them is done now, not in years */
                if (c->pos == before) break;
            }
        }
    case OP_UNION:
        if (read_long(c, &n) || n < 0 || n >= p[1]) return -1;
        return avs_skip(c, p[2 + n], depth + 1);
    case OP_RECORD:
        if (p[1] < 0 || node + 2 + p[1] > c->nprog) return -1;
        for (i = 0; i < p[1]; i++) if (skip_fast(c, p[2 + i], depth + 1)) return -1;
        return 0;
    default: return -1;
    }
}

/* --- the records of an array: wanted scalar fields only ---------------------------------------- */

/* The scalar at `node` as a Python object (a union: its branch's); NULL with ValueError on bad data
 * or TypeError for a type that is not a scalar. */
PyObject *avs_read_scalar(ctx_t *c, int32_t node, int depth) {
    int64_t n;
    if (depth > 2 || node < 0 || node >= c->nprog) goto bad;
    const int32_t *p = c->prog + node;
    switch (p[0]) {
    case OP_NULL: Py_RETURN_NONE;
    case OP_BOOL:
        if (c->pos >= c->len) goto bad;
        return PyBool_FromLong(c->b[c->pos++] != 0);
    case OP_VARINT: if (read_long(c, &n)) goto bad; return PyLong_FromLongLong(n);
    case OP_FLOAT: {
        float f; if (advance(c, 4)) goto bad; memcpy(&f, c->b + c->pos - 4, 4); return PyFloat_FromDouble(f); }
    case OP_DOUBLE: {
        double d; if (advance(c, 8)) goto bad; memcpy(&d, c->b + c->pos - 8, 8); return PyFloat_FromDouble(d); }
    case OP_BYTES: case OP_STRING:
        if (read_long(c, &n) || advance(c, n)) goto bad;
        if (p[0] == OP_BYTES) return PyBytes_FromStringAndSize((const char *)c->b + c->pos - n, (Py_ssize_t)n);
        return PyUnicode_DecodeUTF8((const char *)c->b + c->pos - n, (Py_ssize_t)n, "strict");
    case OP_UNION:
        if (read_long(c, &n) || n < 0 || n >= p[1]) goto bad;
        return avs_read_scalar(c, p[2 + n], depth + 1);
    default:
        PyErr_SetString(PyExc_TypeError, "only scalar fields (numbers, booleans, strings, bytes) can be read this way");
        return NULL;
    }
bad:
    PyErr_Format(PyExc_ValueError, "corrupt or truncated Avro data at byte %zd", c->pos);
    return NULL;
}

/* Positions `c` at the first block of the array at `node`: returns the item RECORD node, 0 for a
 * null value, -1 on error. */
int32_t avs_open_array(ctx_t *c, int32_t node) {
    int64_t n;
    if (node < 0 || node + 1 >= c->nprog) return -1;
    if (c->prog[node] == OP_UNION) {
        if (read_long(c, &n) || n < 0 || n >= c->prog[node + 1]) return -1;
        node = c->prog[node + 2 + n];
        if (node < 0 || node >= c->nprog) return -1;
        if (c->prog[node] == OP_NULL) return 0;
    }
    if (c->prog[node] != OP_ARRAY) return -1;
    int32_t item = c->prog[node + 1];
    if (item <= 0 || item + 1 >= c->nprog || c->prog[item] != OP_RECORD) return -1;
    if (c->prog[item + 1] < 0 || item + 2 + c->prog[item + 1] > c->nprog) return -1;
    return item;
}

/* The count of the next block of items (0: the end); -1 on error. */
int64_t avs_next_block(ctx_t *c) {
    int64_t n, size;
    if (read_long(c, &n)) return -1;
    if (n < 0) { if (read_long(c, &size)) return -1; n = -n; }
    return n;
}

/* For each field of record `item`: the slot of the wanted value it fills, or -1 to skip it. */
int avs_slots(ctx_t *c, int32_t item, PyObject *wanted, int key_pairs, int *slot, int32_t nfields) {
    for (int32_t i = 0; i < nfields; i++) slot[i] = -1;
    Py_ssize_t k, nw = PyTuple_GET_SIZE(wanted);
    for (k = 0; k < nw; k++) {
        PyObject *w = PyTuple_GET_ITEM(wanted, k);
        long idx = PyLong_AsLong(key_pairs ? PyTuple_GetItem(w, 0) : w);
        if (idx == -1 && PyErr_Occurred()) return -1;
        if (idx < 0 || idx >= nfields) { PyErr_SetString(PyExc_ValueError, "wanted field index out of range"); return -1; }
        slot[idx] = (int)k;
    }
    return 0;
}
