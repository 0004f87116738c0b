/*
 * Read one WAL segment's records far enough to learn what point-in-time restore needs:
 * where valid WAL ends, the timestamps of its commit and abort records (the only records
 * recovery_target_time stops at) and its named restore points.
 *
 * Layout (src/include/access/xlog_internal.h, xlogrecord.h, xact.h; unchanged in 12-18, and
 * tests/integration/test_version_matrix.py restores to a time on each of them):
 * every XLOG_BLCKSZ page starts with a header of 24 bytes (40 when XLP_LONG_HEADER) whose
 * xlp_pageaddr is the page's own LSN; records (24-byte XLogRecord header, then block
 * headers, then block data, then main data) are 8-byte aligned and run on across pages,
 * so the scan first joins the page payloads into one stream. A page whose xlp_pageaddr is
 * not its LSN (a recycled segment's old contents) or a zero length ends the valid WAL.
 * Written in C because no maintained Python library parses WAL, and a scan per archived
 * segment must cost milliseconds without holding the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WAL_PAGE 8192
#define SHORT_HEADER 24
#define LONG_HEADER 40
#define XLP_FIRST_IS_CONTRECORD 0x0001
#define XLP_LONG_HEADER 0x0002
#define RECORD_HEADER 24
#define RM_XLOG_ID 0
#define RM_XACT_ID 1
#define XLOG_SWITCH 0x40
#define XLOG_RESTORE_POINT 0x70
#define XACT_OPMASK 0x70
#define MAX_RESTORE_POINTS 256
#define MAXALIGN(x) (((x) + 7) & ~((uint64_t)7))

static uint32_t u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint16_t u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* Length of a record's main data, or -1 when its headers are not the expected ones. */
static int64_t main_data_length(const unsigned char *rec, uint32_t tot_len)
{
    uint32_t p = RECORD_HEADER;
    while (p < tot_len) {
        unsigned char id = rec[p];
        if (id == 255)
            return p + 1 < tot_len ? rec[p + 1] : -1;
        if (id == 254)
            return p + 4 < tot_len ? (int64_t)u32(rec + p + 1) : -1;
        if (id == 253) { p += 3; continue; } /* replication origin */
        if (id == 252) { p += 5; continue; } /* top-level xid */
        return -1; /* a block reference: not a record we read */
    }
    return 0;
}

/* The LSN of a stream offset: only a segment's first page may have the long header. */
static uint64_t stream_lsn(uint64_t off, uint64_t seg_lsn, size_t hdr0)
{
    uint64_t first = WAL_PAGE - hdr0, rest = WAL_PAGE - SHORT_HEADER;
    if (off < first)
        return seg_lsn + hdr0 + off;
    off -= first;
    return seg_lsn + (1 + off / rest) * WAL_PAGE + SHORT_HEADER + off % rest;
}

typedef struct {
    uint64_t end_lsn;
    int64_t first_time, last_time;
    long xacts;
    int switched;
    int n_points;
    int64_t point_time[MAX_RESTORE_POINTS];
    uint64_t point_lsn[MAX_RESTORE_POINTS];
    char point_name[MAX_RESTORE_POINTS][65];
} ScanResult;

static void scan(const unsigned char *buf, size_t len, uint64_t seg_lsn, unsigned char *stream,
                 ScanResult *r)
{
    size_t pages = len / WAL_PAGE, used = 0, npages = 0;
    uint64_t first_rem = 0;
    r->end_lsn = seg_lsn;
    for (size_t i = 0; i < pages; i++) {
        const unsigned char *page = buf + i * WAL_PAGE;
        uint16_t info = u16(page + 2);
        if (u64(page + 8) != seg_lsn + i * WAL_PAGE)
            break;
        size_t hdr = (info & XLP_LONG_HEADER) ? LONG_HEADER : SHORT_HEADER;
        if (i == 0 && (info & XLP_FIRST_IS_CONTRECORD))
            first_rem = u32(page + 16);
        npages++;
        memcpy(stream + used, page + hdr, WAL_PAGE - hdr);
        used += WAL_PAGE - hdr;
    }
    if (npages == 0)
        return;
    size_t hdr0 = (u16(buf + 2) & XLP_LONG_HEADER) ? LONG_HEADER : SHORT_HEADER;
#define LSN_AT(off) stream_lsn((off), seg_lsn, hdr0)
    uint64_t pos = MAXALIGN(first_rem);
    if (pos >= used) {
        r->end_lsn = seg_lsn + npages * WAL_PAGE;
        return;
    }
    r->end_lsn = LSN_AT(pos);
    while (pos + RECORD_HEADER <= used) {
        const unsigned char *rec = stream + pos;
        uint32_t tot_len = u32(rec);
        if (tot_len < RECORD_HEADER)
            break;
        if (pos + tot_len > used) { /* continues in the next segment */
            r->end_lsn = seg_lsn + npages * WAL_PAGE;
            break;
        }
        unsigned char info = rec[16], rmid = rec[17];
        if (rmid == RM_XACT_ID) {
            unsigned char op = info & XACT_OPMASK;
            if (op == 0x00 || op == 0x20 || op == 0x30 || op == 0x40) {
                int64_t mlen = main_data_length(rec, tot_len);
                if (mlen >= 8) {
                    int64_t t;
                    memcpy(&t, rec + tot_len - mlen, 8);
                    if (r->xacts == 0)
                        r->first_time = t;
                    r->last_time = t;
                    r->xacts++;
                }
            }
        } else if (rmid == RM_XLOG_ID && (info & 0xF0) == XLOG_RESTORE_POINT) {
            int64_t mlen = main_data_length(rec, tot_len);
            if (mlen >= 8 + 64 && r->n_points < MAX_RESTORE_POINTS) {
                const unsigned char *d = rec + tot_len - mlen;
                memcpy(&r->point_time[r->n_points], d, 8);
                memcpy(r->point_name[r->n_points], d + 8, 64);
                r->point_name[r->n_points][64] = 0;
                r->point_lsn[r->n_points] = LSN_AT(pos);
                r->n_points++;
            }
        }
        pos += MAXALIGN(tot_len);
        r->end_lsn = pos >= used ? seg_lsn + npages * WAL_PAGE : LSN_AT(pos);
        if (rmid == RM_XLOG_ID && (info & 0xF0) == XLOG_SWITCH) {
            r->switched = 1;
            break;
        }
    }
#undef LSN_AT
}

static PyObject *scan_segment(PyObject *self, PyObject *args)
{
    Py_buffer view;
    unsigned long long seg_lsn;
    if (!PyArg_ParseTuple(args, "y*K", &view, &seg_lsn))
        return NULL;
    size_t len = (size_t)view.len;
    unsigned char *stream = malloc(len ? len : 1);
    ScanResult *r = calloc(1, sizeof(ScanResult));
    if (!stream || !r) {
        free(stream); free(r);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    scan(view.buf, len, seg_lsn, stream, r);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    free(stream);
    PyObject *points = PyList_New(0);
    for (int i = 0; points && i < r->n_points; i++) {
        PyObject *item = Py_BuildValue("(yLK)", r->point_name[i], (long long)r->point_time[i],
                                       (unsigned long long)r->point_lsn[i]);
        if (!item || PyList_Append(points, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(points);
            break;
        }
        Py_DECREF(item);
    }
    PyObject *result = NULL;
    if (points) {
        PyObject *first = r->xacts ? PyLong_FromLongLong(r->first_time) : Py_NewRef(Py_None);
        PyObject *last = r->xacts ? PyLong_FromLongLong(r->last_time) : Py_NewRef(Py_None);
        result = Py_BuildValue("(KNNliN)", (unsigned long long)r->end_lsn, first, last,
                               r->xacts, r->switched, points);
    }
    free(r);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_segment", scan_segment, METH_VARARGS,
     "(end_lsn, first_xact_time, last_xact_time, xacts, switched, [(name, time, lsn)])"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_walscan",
                                    "What point-in-time restore needs from a WAL segment", -1,
                                    methods};

PyMODINIT_FUNC PyInit__walscan(void) { return PyModule_Create(&module); }
