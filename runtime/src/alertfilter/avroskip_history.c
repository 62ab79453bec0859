/* The records of a history array (e.g. prvDiaSources): only the wanted scalar fields, as dicts or as
 * columns; the other fields skipped in C (see avroskip.h). */
#include "avroskip.h"

/* The wanted fields of the records of the array at `node`, read from c->pos (left after the
 * array): a new list of dicts, None for a null value; NULL with an exception set. */
PyObject *avs_items_at(ctx_t *c, int32_t node, PyObject *wanted) {
    PyObject *result = NULL, *rec = NULL;
    int *slot = NULL;
    int32_t item = avs_open_array(c, node);
    if (item < 0) goto corrupt;
    if (item == 0) Py_RETURN_NONE;
    int32_t nfields = c->prog[item + 1];
    slot = PyMem_Malloc(sizeof(int) * (nfields > 0 ? nfields : 1));
    if (!slot) { PyErr_NoMemory(); goto fail; }
    if (avs_slots(c, item, wanted, 1, slot, nfields)) goto fail;
    result = PyList_New(0);
    if (!result) goto fail;
    for (;;) {
        int64_t n = avs_next_block(c);
        if (n < 0) goto corrupt;
        if (n == 0) break;
        for (int64_t j = 0; j < n; j++) {
            rec = PyDict_New();
            if (!rec) goto fail;
            for (int32_t i = 0; i < nfields; i++) {
                if (slot[i] < 0) { if (skip_fast(c, c->prog[item + 2 + i], 1)) goto corrupt; continue; }
                PyObject *v = avs_read_scalar(c, c->prog[item + 2 + i], 0);
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


/* The columns of the wanted fields (indices, one kind each) of the records of the array at `node`,
 * read from c->pos (left after the array): a new (n, cols) tuple, each column by its kind:
 * COL_FLOAT (bytes of n native doubles, null -> NaN), COL_INT (bytes of n native int64, null -> 0),
 * COL_BOOL (bytes of n 0/1), each as (data, mask) with a bytes mask of n (1: null); COL_OBJECT a
 * list of n Python values. A null array gives n = 0. NULL with an exception set on error. */
PyObject *avs_columns_at(ctx_t *c, int32_t node, PyObject *wanted, PyObject *kinds) {
    PyObject *result = NULL;
    int *slot = NULL;
    long *kind = NULL;
    column_t *cols = NULL;
    Py_ssize_t nw = PyTuple_GET_SIZE(wanted), n = 0, cap = 0, k;
    if (PyTuple_GET_SIZE(kinds) != nw) { PyErr_SetString(PyExc_ValueError, "one kind per wanted field"); goto done; }
    cols = PyMem_Calloc(nw ? nw : 1, sizeof(column_t));
    kind = PyMem_Calloc(nw ? nw : 1, sizeof(long));
    if (!cols || !kind) { PyErr_NoMemory(); goto done; }
    int32_t item = avs_open_array(c, node);
    if (item < 0) goto corrupt;
    int32_t nfields = item ? c->prog[item + 1] : 0;
    slot = PyMem_Malloc(sizeof(int) * (nfields > 0 ? nfields : 1));
    if (!slot) { PyErr_NoMemory(); goto done; }
    if (item && avs_slots(c, item, wanted, 0, slot, nfields)) goto done;
    for (k = 0; k < nw; k++) {
        kind[k] = PyLong_AsLong(PyTuple_GET_ITEM(kinds, k));
        if (kind[k] == -1 && PyErr_Occurred()) goto done;
        if (kind[k] == COL_OBJECT && !(cols[k].list = PyList_New(0))) goto done;
    }
    while (item) {
        int64_t blk = avs_next_block(c);
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
                PyObject *v = avs_read_scalar(c, c->prog[item + 2 + i], 0);
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
