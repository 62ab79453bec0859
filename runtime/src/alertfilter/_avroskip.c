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
#include "avroskip.h"


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
            PyObject *recs = tag == 0 ? avs_items_at(&c, c.prog[root + 2 + i], PyTuple_GET_ITEM(wanted, 1))
                                      : avs_columns_at(&c, c.prog[root + 2 + i], PyTuple_GET_ITEM(wanted, 1), PyTuple_GET_ITEM(wanted, 2));
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

static PyObject *items(PyObject *self, PyObject *args) {
    Py_buffer body, prog;
    int node;
    PyObject *wanted, *result;
    if (!PyArg_ParseTuple(args, "y*y*iO!", &body, &prog, &node, &PyTuple_Type, &wanted)) return NULL;
    ctx_t c = { (const uint8_t *)body.buf, body.len, 0, (const int32_t *)prog.buf, prog.len / 4 };
    result = avs_items_at(&c, node, wanted);
    if (result && c.pos != c.len) {
        Py_CLEAR(result);
        PyErr_Format(PyExc_ValueError, "%zd bytes left over after the array", c.len - c.pos);
    }
    PyBuffer_Release(&body);
    PyBuffer_Release(&prog);
    return result;
}

static PyObject *columns(PyObject *self, PyObject *args) {
    Py_buffer body, prog;
    int node;
    PyObject *wanted, *kinds, *result;
    if (!PyArg_ParseTuple(args, "y*y*iO!O!", &body, &prog, &node, &PyTuple_Type, &wanted, &PyTuple_Type, &kinds))
        return NULL;
    ctx_t c = { (const uint8_t *)body.buf, body.len, 0, (const int32_t *)prog.buf, prog.len / 4 };
    result = avs_columns_at(&c, node, wanted, kinds);
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
