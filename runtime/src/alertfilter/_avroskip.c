/* Byte offsets of the top-level fields of an Avro record body, found by skipping.
 *
 * A schema is compiled (by alertfilter.projection) into a program of int32 nodes:
 *   NULL | BOOL | VARINT (int, long, enum) | FLOAT | DOUBLE | BYTES (bytes, string)
 *   FIXED size | ARRAY item | MAP value | UNION n branch... | RECORD n field...
 * field_offsets(body, program, root) walks the root RECORD and returns n+1 offsets: field i
 * occupies body[off[i]:off[i+1]]. Arrays and maps written with block sizes are skipped in one
 * step. Errors (truncated data, a bad union index, nesting deeper than 200) raise ValueError.
 * Plain C over a byte buffer: no Python object is created while skipping.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

enum { OP_NULL = 0, OP_BOOL, OP_VARINT, OP_FLOAT, OP_DOUBLE, OP_BYTES, OP_FIXED, OP_ARRAY, OP_MAP, OP_UNION, OP_RECORD };
#define MAX_DEPTH 200

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

static int skip(ctx_t *c, int32_t node, int depth) {
    int64_t n, i;
    if (depth > MAX_DEPTH || node < 0 || node >= c->nprog) return -1;
    const int32_t *p = c->prog + node;
    switch (p[0]) {
    case OP_NULL: return 0;
    case OP_BOOL: return advance(c, 1);
    case OP_VARINT: return read_long(c, &n);
    case OP_FLOAT: return advance(c, 4);
    case OP_DOUBLE: return advance(c, 8);
    case OP_BYTES: if (read_long(c, &n)) return -1; return advance(c, n);
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
                if (skip(c, p[1], depth + 1)) return -1;
            }
        }
    case OP_UNION:
        if (read_long(c, &n) || n < 0 || n >= p[1]) return -1;
        return skip(c, p[2 + n], depth + 1);
    case OP_RECORD:
        for (i = 0; i < p[1]; i++) if (skip(c, p[2 + i], depth + 1)) return -1;
        return 0;
    default: return -1;
    }
}

static PyObject *field_offsets(PyObject *self, PyObject *args) {
    Py_buffer body, prog;
    int root;
    if (!PyArg_ParseTuple(args, "y*y*i", &body, &prog, &root)) return NULL;
    ctx_t c = { (const uint8_t *)body.buf, body.len, 0, (const int32_t *)prog.buf, prog.len / 4 };
    PyObject *result = NULL;
    if (root < 0 || root + 1 >= c.nprog || c.prog[root] != OP_RECORD) {
        PyErr_SetString(PyExc_ValueError, "the program's root is not a record");
        goto done;
    }
    int32_t nfields = c.prog[root + 1];
    result = PyTuple_New(nfields + 1);
    if (!result) goto done;
    for (int32_t i = 0; i < nfields; i++) {
        PyTuple_SET_ITEM(result, i, PyLong_FromSsize_t(c.pos));
        if (skip(&c, c.prog[root + 2 + i], 0)) {
            Py_CLEAR(result);
            PyErr_Format(PyExc_ValueError, "corrupt or truncated Avro data in top-level field %d at byte %zd", (int)i, c.pos);
            goto done;
        }
    }
    PyTuple_SET_ITEM(result, nfields, PyLong_FromSsize_t(c.pos));
done:
    PyBuffer_Release(&body);
    PyBuffer_Release(&prog);
    return result;
}

static PyMethodDef methods[] = {
    {"field_offsets", field_offsets, METH_VARARGS,
     "field_offsets(body: bytes, program: bytes, root: int) -> tuple[int, ...]: byte offsets of the root record's fields"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_avroskip", "Skip Avro data to find top-level field offsets.", -1, methods};

PyMODINIT_FUNC PyInit__avroskip(void) { return PyModule_Create(&module); }
