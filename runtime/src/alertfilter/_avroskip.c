/* Byte offsets of the top-level fields of an Avro record body, found by skipping; and the wanted
 * fields of the records of an array (a history such as prvDiaSources), the others skipped.
 *
 * A schema is compiled (by alertfilter.projection) into a program of int32 nodes:
 *   NULL | BOOL | VARINT (int, long) | FLOAT | DOUBLE | BYTES | STRING | ENUM
 *   FIXED size | ARRAY item | MAP value | UNION n branch... | RECORD n field...
 * field_offsets(body, program, root) walks the root RECORD and returns n+1 offsets: field i
 * occupies body[off[i]:off[i+1]]. Arrays and maps written with block sizes are skipped in one
 * step. Errors (truncated data, a bad union index, nesting deeper than 200) raise ValueError.
 * Plain C over a byte buffer: no Python object is created while skipping.
 *
 * items(body, program, node, wanted) and columns(body, program, node, wanted, kinds) read a
 * value of type `node` (an ARRAY of RECORDs, or a UNION of NULL and such an ARRAY) that fills
 * `body`: the first gives a list of dicts holding only the wanted fields ((index, key) pairs)
 * of each record, the second one column per wanted field index (see columns()). Only scalar
 * fields (null, boolean, int, long, float, double, bytes, string, or a union of them) can be
 * wanted; a skipped field costs a C-level skip.
 */
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

static int read_long(ctx_t *c, int64_t *out) {
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

static int advance(ctx_t *c, int64_t n) {
    if (n < 0 || n > c->len - c->pos) return -1;
    c->pos += (Py_ssize_t)n;
    return 0;
}

static int skip(ctx_t *c, int32_t node, int depth);

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
        if (byte & 0x80) return skip(c, node, depth);  /* a union index past 63: the general way */
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
    default: return skip(c, node, depth + 1);
    }
}

static int skip(ctx_t *c, int32_t node, int depth) {
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
                if (p[0] == OP_MAP) { int64_t klen; if (read_long(c, &klen) || advance(c, klen)) return -1; }
                if (skip_fast(c, p[1], depth + 1)) return -1;
            }
        }
    case OP_UNION:
        if (read_long(c, &n) || n < 0 || n >= p[1]) return -1;
        return skip(c, p[2 + n], depth + 1);
    case OP_RECORD:
        if (p[1] < 0 || node + 2 + p[1] > c->nprog) return -1;
        for (i = 0; i < p[1]; i++) if (skip_fast(c, p[2 + i], depth + 1)) return -1;
        return 0;
    default: return -1;
    }
}

static PyObject *items_at(ctx_t *c, int32_t node, PyObject *wanted);
static PyObject *columns_at(ctx_t *c, int32_t node, PyObject *wanted, PyObject *kinds);

/* field_offsets(body, program, root[, plans]) -> offsets, or (offsets, {index: result}) with
 * plans ({top-level field index: (0, wanted pairs) as items(), or (1, wanted, kinds) as
 * columns()}): those arrays are read in the same walk, instead of skipped and read again. */
static PyObject *field_offsets(PyObject *self, PyObject *args) {
    Py_buffer body, prog;
    int root;
    PyObject *plans = NULL, *got = NULL;
    if (!PyArg_ParseTuple(args, "y*y*i|O!", &body, &prog, &root, &PyDict_Type, &plans)) return NULL;
    ctx_t c = { (const uint8_t *)body.buf, body.len, 0, (const int32_t *)prog.buf, prog.len / 4 };
    PyObject *result = NULL;
    if (root < 0 || root + 1 >= c.nprog || c.prog[root] != OP_RECORD || root + 2 + c.prog[root + 1] > c.nprog) {
        PyErr_SetString(PyExc_ValueError, "the program's root is not a record");
        goto done;
    }
    int32_t nfields = c.prog[root + 1];
    result = PyTuple_New(nfields + 1);
    if (!result) goto done;
    if (plans && !(got = PyDict_New())) { Py_CLEAR(result); goto done; }
    for (int32_t i = 0; i < nfields; i++) {
        PyTuple_SET_ITEM(result, i, PyLong_FromSsize_t(c.pos));
        PyObject *wanted = NULL;
        if (plans) {
            PyObject *key = PyLong_FromLong(i);
            if (!key) { Py_CLEAR(result); goto done; }
            wanted = PyDict_GetItemWithError(plans, key);
            Py_DECREF(key);
            if (!wanted && PyErr_Occurred()) { Py_CLEAR(result); goto done; }
        }
        if (wanted) {
            Py_ssize_t np = PyTuple_Check(wanted) ? PyTuple_GET_SIZE(wanted) : 0;
            long tag = np >= 2 ? PyLong_AsLong(PyTuple_GET_ITEM(wanted, 0)) : -1;
            if (!((tag == 0 && np == 2) || (tag == 1 && np == 3)) || !PyTuple_Check(PyTuple_GET_ITEM(wanted, 1))
                || (tag == 1 && !PyTuple_Check(PyTuple_GET_ITEM(wanted, 2)))) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "a plan is (0, wanted pairs) or (1, wanted, kinds)");
                Py_CLEAR(result);
                goto done;
            }
            PyObject *recs = tag == 0 ? items_at(&c, c.prog[root + 2 + i], PyTuple_GET_ITEM(wanted, 1))
                                      : columns_at(&c, c.prog[root + 2 + i], PyTuple_GET_ITEM(wanted, 1), PyTuple_GET_ITEM(wanted, 2));
            if (!recs) { Py_CLEAR(result); goto done; }
            PyObject *key = PyLong_FromLong(i);
            int err = key ? PyDict_SetItem(got, key, recs) : -1;
            Py_XDECREF(key);
            Py_DECREF(recs);
            if (err) { Py_CLEAR(result); goto done; }
        } else if (skip_fast(&c, c.prog[root + 2 + i], 0)) {
            Py_CLEAR(result);
            PyErr_Format(PyExc_ValueError, "corrupt or truncated Avro data in top-level field %d at byte %zd", (int)i, c.pos);
            goto done;
        }
    }
    PyTuple_SET_ITEM(result, nfields, PyLong_FromSsize_t(c.pos));
    if (plans) {
        PyObject *pair = PyTuple_Pack(2, result, got);
        Py_DECREF(result);
        result = pair;
    }
done:
    Py_XDECREF(got);
    PyBuffer_Release(&body);
    PyBuffer_Release(&prog);
    return result;
}

/* --- the records of an array: wanted scalar fields only ---------------------------------------- */

/* The scalar at `node` as a Python object (a union: its branch's); NULL with ValueError on bad data
 * or TypeError for a type that is not a scalar. */
static PyObject *read_scalar(ctx_t *c, int32_t node, int depth) {
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
        return read_scalar(c, p[2 + n], depth + 1);
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
static int32_t open_array(ctx_t *c, int32_t node) {
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
static int64_t next_block(ctx_t *c) {
    int64_t n, size;
    if (read_long(c, &n)) return -1;
    if (n < 0) { if (read_long(c, &size)) return -1; n = -n; }
    return n;
}

/* For each field of record `item`: the slot of the wanted value it fills, or -1 to skip it. */
static int slots(ctx_t *c, int32_t item, PyObject *wanted, int key_pairs, int *slot, int32_t nfields) {
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

/* The wanted fields of the records of the array at `node`, read from c->pos (left after the
 * array): a new list of dicts, None for a null value; NULL with an exception set. */
static PyObject *items_at(ctx_t *c, int32_t node, PyObject *wanted) {
    PyObject *result = NULL, *rec = NULL;
    int *slot = NULL;
    int32_t item = open_array(c, node);
    if (item < 0) goto corrupt;
    if (item == 0) Py_RETURN_NONE;
    int32_t nfields = c->prog[item + 1];
    slot = PyMem_Malloc(sizeof(int) * (nfields > 0 ? nfields : 1));
    if (!slot) { PyErr_NoMemory(); goto fail; }
    if (slots(c, item, wanted, 1, slot, nfields)) goto fail;
    result = PyList_New(0);
    if (!result) goto fail;
    for (;;) {
        int64_t n = next_block(c);
        if (n < 0) goto corrupt;
        if (n == 0) break;
        for (int64_t j = 0; j < n; j++) {
            rec = PyDict_New();
            if (!rec) goto fail;
            for (int32_t i = 0; i < nfields; i++) {
                if (slot[i] < 0) { if (skip_fast(c, c->prog[item + 2 + i], 1)) goto corrupt; continue; }
                PyObject *v = read_scalar(c, c->prog[item + 2 + i], 0);
                if (!v) goto fail;
                int err = PyDict_SetItem(rec, PyTuple_GET_ITEM(PyTuple_GET_ITEM(wanted, slot[i]), 1), v);
                Py_DECREF(v);
                if (err) goto fail;
            }
            if (PyList_Append(result, rec)) goto fail;
            Py_CLEAR(rec);
        }
    }
    PyMem_Free(slot);
    return result;
corrupt:
    if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "corrupt or truncated Avro data in an array at byte %zd", c->pos);
fail:
    Py_XDECREF(rec);
    Py_XDECREF(result);
    PyMem_Free(slot);
    return NULL;
}

static PyObject *items(PyObject *self, PyObject *args) {
    Py_buffer body, prog;
    int node;
    PyObject *wanted, *result;
    if (!PyArg_ParseTuple(args, "y*y*iO!", &body, &prog, &node, &PyTuple_Type, &wanted)) return NULL;
    ctx_t c = { (const uint8_t *)body.buf, body.len, 0, (const int32_t *)prog.buf, prog.len / 4 };
    result = items_at(&c, node, wanted);
    if (result && c.pos != c.len) {
        Py_CLEAR(result);
        PyErr_Format(PyExc_ValueError, "%zd bytes left over after the array", c.len - c.pos);
    }
    PyBuffer_Release(&body);
    PyBuffer_Release(&prog);
    return result;
}


/* The columns of the wanted fields (indices, one kind each) of the records of the array at `node`,
 * read from c->pos (left after the array): a new (n, cols) tuple, each column by its kind:
 * COL_FLOAT (bytes of n native doubles, null -> NaN), COL_INT (bytes of n native int64, null -> 0),
 * COL_BOOL (bytes of n 0/1), each as (data, mask) with a bytes mask of n (1: null); COL_OBJECT a
 * list of n Python values. A null array gives n = 0. NULL with an exception set on error. */
static PyObject *columns_at(ctx_t *c, int32_t node, PyObject *wanted, PyObject *kinds) {
    PyObject *result = NULL;
    int *slot = NULL;
    long *kind = NULL;
    column_t *cols = NULL;
    Py_ssize_t nw = PyTuple_GET_SIZE(wanted), n = 0, cap = 0, k;
    if (PyTuple_GET_SIZE(kinds) != nw) { PyErr_SetString(PyExc_ValueError, "one kind per wanted field"); goto done; }
    cols = PyMem_Calloc(nw ? nw : 1, sizeof(column_t));
    kind = PyMem_Calloc(nw ? nw : 1, sizeof(long));
    if (!cols || !kind) { PyErr_NoMemory(); goto done; }
    int32_t item = open_array(c, node);
    if (item < 0) goto corrupt;
    int32_t nfields = item ? c->prog[item + 1] : 0;
    slot = PyMem_Malloc(sizeof(int) * (nfields > 0 ? nfields : 1));
    if (!slot) { PyErr_NoMemory(); goto done; }
    if (item && slots(c, item, wanted, 0, slot, nfields)) goto done;
    for (k = 0; k < nw; k++) {
        kind[k] = PyLong_AsLong(PyTuple_GET_ITEM(kinds, k));
        if (kind[k] == -1 && PyErr_Occurred()) goto done;
        if (kind[k] == COL_OBJECT && !(cols[k].list = PyList_New(0))) goto done;
    }
    while (item) {
        int64_t blk = next_block(c);
        if (blk < 0) goto corrupt;
        if (blk == 0) break;
        if (blk > c->len - c->pos + 1) goto corrupt;  /* every item takes a byte at least: no huge claims */
        if (n + blk > cap) {
            cap = (n + blk) * 2;
            for (k = 0; k < nw; k++) {
                if (cols[k].list) continue;
                char *d = PyMem_Realloc(cols[k].data, (size_t)cap * 8);
                if (!d) { PyErr_NoMemory(); goto done; }
                cols[k].data = d;
                uint8_t *m = PyMem_Realloc(cols[k].mask, (size_t)cap);
                if (!m) { PyErr_NoMemory(); goto done; }
                cols[k].mask = m;
            }
        }
        for (int64_t j = 0; j < blk; j++, n++) {
            for (int32_t i = 0; i < nfields; i++) {
                if (slot[i] < 0) { if (skip_fast(c, c->prog[item + 2 + i], 1)) goto corrupt; continue; }
                column_t *col = &cols[slot[i]];
                PyObject *v = read_scalar(c, c->prog[item + 2 + i], 0);
                if (!v) goto done;
                if (col->list) { int err = PyList_Append(col->list, v); Py_DECREF(v); if (err) goto done; continue; }
                long kd = kind[slot[i]];
                col->mask[n] = v == Py_None;
                if (kd == COL_FLOAT) {
                    double d = v == Py_None ? Py_NAN : PyFloat_AsDouble(v);
                    memcpy(col->data + n * 8, &d, 8);
                } else {
                    int64_t x = v == Py_None ? 0 : (int64_t)PyLong_AsLongLong(v);
                    if (kd == COL_BOOL) col->data[n] = (char)(x != 0); else memcpy(col->data + n * 8, &x, 8);
                }
                Py_DECREF(v);
                if (PyErr_Occurred()) goto done;
            }
        }
    }
    PyObject *out = PyTuple_New(nw);
    if (!out) goto done;
    for (k = 0; k < nw; k++) {
        PyObject *v;
        if (cols[k].list) { v = cols[k].list; Py_INCREF(v); }
        else v = Py_BuildValue("(y#y#)", cols[k].data ? cols[k].data : "", (Py_ssize_t)(kind[k] == COL_BOOL ? n : n * 8),
                               cols[k].mask ? (const char *)cols[k].mask : "", n);
        if (!v) { Py_DECREF(out); goto done; }
        PyTuple_SET_ITEM(out, k, v);
    }
    result = Py_BuildValue("(nN)", n, out);
    goto done;
corrupt:
    if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "corrupt or truncated Avro data in an array at byte %zd", c->pos);
done:
    if (cols) {
        for (k = 0; k < nw; k++) { PyMem_Free(cols[k].data); PyMem_Free(cols[k].mask); Py_XDECREF(cols[k].list); }
        PyMem_Free(cols);
    }
    PyMem_Free(kind);
    PyMem_Free(slot);
    return result;
}

static PyObject *columns(PyObject *self, PyObject *args) {
    Py_buffer body, prog;
    int node;
    PyObject *wanted, *kinds, *result;
    if (!PyArg_ParseTuple(args, "y*y*iO!O!", &body, &prog, &node, &PyTuple_Type, &wanted, &PyTuple_Type, &kinds))
        return NULL;
    ctx_t c = { (const uint8_t *)body.buf, body.len, 0, (const int32_t *)prog.buf, prog.len / 4 };
    result = columns_at(&c, node, wanted, kinds);
    if (result && c.pos != c.len) {
        Py_CLEAR(result);
        PyErr_Format(PyExc_ValueError, "%zd bytes left over after the array", c.len - c.pos);
    }
    PyBuffer_Release(&body);
    PyBuffer_Release(&prog);
    return result;
}

static PyMethodDef methods[] = {
    {"field_offsets", field_offsets, METH_VARARGS,
     "field_offsets(body, program, root[, plans]) -> offsets or (offsets, {index: records}): byte offsets of the root record's fields"},
    {"items", items, METH_VARARGS,
     "items(body, program, node, wanted: tuple[tuple[int, str], ...]) -> list[dict] | None: the wanted fields of each record of an array"},
    {"columns", columns, METH_VARARGS,
     "columns(body, program, node, wanted: tuple[int, ...], kinds: tuple[int, ...]) -> (n, columns): one column per wanted field"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_avroskip", "Skip Avro data to find top-level field offsets.", -1, methods};

PyMODINIT_FUNC PyInit__avroskip(void) { return PyModule_Create(&module); }
