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
 *
 * block_references() reads the same records' block headers (XLogRecordBlockHeader, the
 * image header, the relation, the block number; DecodeXLogRecord in xlogreader.c) for the
 * change maps of WAL-tracked differentials (docs/change-map.md). The image header's flags
 * moved in PostgreSQL 15 (compression methods): the page magic says which layout a segment
 * has.
 *
 * blocks_by_relation(), sorted_unique() and block_runs() keep a change map's block numbers
 * (sorted, each once, as native uint32 arrays per relation) without numpy, whose import
 * cost every differential ~0.08 s of its start, and without a Python object per block
 * (the WAL of a busy hour names millions).
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
#define MAX_BLOCK_ID 32          /* XLR_MAX_BLOCK_ID */
#define MAGIC_PG15 0xD110        /* XLOG_PAGE_MAGIC of PostgreSQL 15, the first new layout */
#define RM_SMGR_ID 2
#define RM_DBASE_ID 4
#define RM_TBLSPC_ID 5
#define REF_SIZE 28              /* lsn 8, spc 4, db 4, rel 4, fork 4, block 4 */

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

/* A transaction's commit or abort, prepared or not (what recovery_target_time stops at). */
static int xact_end(unsigned char info)
{
    unsigned char op = info & XACT_OPMASK;
    return op == 0x00 || op == 0x20 || op == 0x30 || op == 0x40;
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

/* Join the valid pages' payloads into ``stream``; the number of pages joined, the stream's
 * length and the length of the record continued from the previous segment. */
static size_t join_pages(const unsigned char *buf, size_t len, uint64_t seg_lsn,
                         unsigned char *stream, size_t *used, uint64_t *first_rem)
{
    size_t pages = len / WAL_PAGE, npages = 0;
    *used = 0;
    *first_rem = 0;
    for (size_t i = 0; i < pages; i++) {
        const unsigned char *page = buf + i * WAL_PAGE;
        uint16_t info = u16(page + 2);
        if (u64(page + 8) != seg_lsn + i * WAL_PAGE)
            break;
        size_t hdr = (info & XLP_LONG_HEADER) ? LONG_HEADER : SHORT_HEADER;
        if (i == 0 && (info & XLP_FIRST_IS_CONTRECORD))
            *first_rem = u32(page + 16);
        npages++;
        memcpy(stream + *used, page + hdr, WAL_PAGE - hdr);
        *used += WAL_PAGE - hdr;
    }
    return npages;
}

static void scan(const unsigned char *buf, size_t len, uint64_t seg_lsn, unsigned char *stream,
                 ScanResult *r)
{
    size_t used, npages;
    uint64_t first_rem;
    r->end_lsn = seg_lsn;
    npages = join_pages(buf, len, seg_lsn, stream, &used, &first_rem);
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
            if (xact_end(info)) {
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


/* ---- block references (docs/change-map.md) ---------------------------------------------- */

typedef struct {
    unsigned char *refs;          /* REF_SIZE bytes each */
    size_t n, cap;
    int failed;                   /* out of memory */
} Refs;

static void add_ref(Refs *r, uint64_t lsn, uint32_t spc, uint32_t db, uint32_t rel,
                    uint32_t fork, uint32_t blk)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4096;
        unsigned char *grown = realloc(r->refs, cap * REF_SIZE);
        if (!grown) { r->failed = 1; return; }
        r->refs = grown;
        r->cap = cap;
    }
    unsigned char *p = r->refs + r->n++ * REF_SIZE;
    memcpy(p, &lsn, 8); memcpy(p + 8, &spc, 4); memcpy(p + 12, &db, 4);
    memcpy(p + 16, &rel, 4); memcpy(p + 20, &fork, 4); memcpy(p + 24, &blk, 4);
}

/* Append a record's block references; its main data's length in *main_len. -1 when its
 * headers do not add up (DecodeXLogRecord's checks): nothing is appended then. */
static int decode_blocks(const unsigned char *rec, uint32_t tot_len, int new_layout,
                         uint64_t lsn, Refs *out, uint32_t *main_len)
{
    uint32_t p = RECORD_HEADER, spc = 0, db = 0, rel = 0;
    uint64_t datatotal = 0;
    int have_rel = 0, last_id = -1;
    uint32_t found[MAX_BLOCK_ID + 1][5];
    int n = 0;
    *main_len = 0;
    while (tot_len - p > datatotal) {
        unsigned char id = rec[p];
        if (id == 255) {                       /* XLR_BLOCK_ID_DATA_SHORT */
            if (p + 2 > tot_len) return -1;
            *main_len = rec[p + 1];
            p += 2;
            datatotal += *main_len;
            break;
        }
        if (id == 254) {                       /* XLR_BLOCK_ID_DATA_LONG */
            if (p + 5 > tot_len) return -1;
            *main_len = u32(rec + p + 1);
            p += 5;
            datatotal += *main_len;
            break;
        }
        if (id == 253 || id == 252) {          /* XLR_BLOCK_ID_ORIGIN, _TOPLEVEL_XID */
            uint32_t size = id == 253 ? 3 : 5;
            if (p + size > tot_len) return -1;
            p += size;
            continue;
        }
        if (id > MAX_BLOCK_ID || (int)id <= last_id)
            return -1;
        last_id = id;
        if (p + 4 > tot_len) return -1;
        unsigned char flags = rec[p + 1];
        datatotal += u16(rec + p + 2);
        p += 4;
        if (flags & 0x10) {                    /* BKPBLOCK_HAS_IMAGE */
            if (p + 5 > tot_len) return -1;
            uint16_t image_len = u16(rec + p);
            unsigned char info = rec[p + 4];
            int compressed = new_layout ? (info & 0x1C) != 0 : (info & 0x02) != 0;
            p += 5;
            if (compressed && (info & 0x01))   /* a hole: its length follows */
                p += 2;
            datatotal += image_len;
        }
        if (!(flags & 0x80)) {                 /* not BKPBLOCK_SAME_REL: the relation */
            if (p + 12 > tot_len) return -1;
            spc = u32(rec + p); db = u32(rec + p + 4); rel = u32(rec + p + 8);
            p += 12;
            have_rel = 1;
        } else if (!have_rel) {
            return -1;
        }
        if (p + 4 > tot_len) return -1;
        found[n][0] = spc; found[n][1] = db; found[n][2] = rel;
        found[n][3] = flags & 0x0F; found[n][4] = u32(rec + p);
        n++;
        p += 4;
    }
    if ((uint64_t)(tot_len - p) != datatotal)
        return -1;
    for (int i = 0; i < n; i++)
        add_ref(out, lsn, found[i][0], found[i][1], found[i][2], found[i][3], found[i][4]);
    return 0;
}

typedef struct {
    uint64_t end_lsn;
    uint64_t unfinished_lsn;      /* a record that goes on in the next segment (0: none) */
    uint64_t continued;           /* bytes of a record begun in the previous segment */
    long records, undecoded;
    int switched;
} RefScan;

/* Whether a record's main data is wanted (the files it creates, cuts or drops). */
static int wanted(unsigned char rmid, unsigned char info)
{
    if (rmid == RM_SMGR_ID || rmid == RM_DBASE_ID || rmid == RM_TBLSPC_ID)
        return 1;
    return rmid == RM_XACT_ID && xact_end(info);
}

/* A wanted record's main data: where it lies in the joined stream. */
typedef struct {
    uint64_t lsn;
    size_t pos;
    uint32_t len;
    unsigned char rmid, info;
} MainData;

typedef struct {
    MainData *items;
    size_t n, cap;
} Wanted;

static int add_wanted(Wanted *w, uint64_t lsn, size_t pos, uint32_t len, unsigned char rmid,
                      unsigned char info)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        MainData *grown = realloc(w->items, cap * sizeof(MainData));
        if (!grown) return -1;
        w->items = grown;
        w->cap = cap;
    }
    w->items[w->n++] = (MainData){lsn, pos, len, rmid, info};
    return 0;
}

/* The records are read without the GIL (the change map decodes segments on two threads);
 * the Python objects are made after. */
static PyObject *block_references(PyObject *self, PyObject *args)
{
    Py_buffer view, next = {0};
    unsigned long long seg_lsn;
    if (!PyArg_ParseTuple(args, "y*K|y*", &view, &seg_lsn, &next))
        return NULL;
    size_t len = (size_t)view.len, used = 0, npages = 0, next_used = 0;
    uint64_t first_rem = 0, ignored = 0;
    const unsigned char *buf = view.buf;
    unsigned char *stream = malloc(len + (size_t)next.len + 1);
    Refs refs = {0};
    Wanted wanted_records = {0};
    RefScan r = {0};
    if (!stream) {
        PyBuffer_Release(&view);
        if (next.obj)
            PyBuffer_Release(&next);
        return PyErr_NoMemory();
    }
    unsigned int magic = len >= WAL_PAGE ? u16(buf) : 0;  /* XLOG_PAGE_MAGIC: the major */
    int new_layout = magic >= MAGIC_PG15;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    r.end_lsn = seg_lsn;
    npages = join_pages(buf, len, seg_lsn, stream, &used, &first_rem);
    size_t hdr0 = npages && (u16(buf + 2) & XLP_LONG_HEADER) ? LONG_HEADER : SHORT_HEADER;
    uint64_t pos = MAXALIGN(first_rem);
    r.continued = first_rem;
    /* The next segment's pages, when this one's are all valid, go on the stream: a record
     * begun here is read to its end there, and none begun there ("own": this segment's
     * part of the stream). */
    size_t own = used;
    if (next.obj && len % WAL_PAGE == 0 && npages == len / WAL_PAGE)
        join_pages(next.buf, (size_t)next.len, seg_lsn + len, stream + used, &next_used,
                   &ignored);
    used += next_used;
    while (npages && pos < own && pos + RECORD_HEADER <= used) {
        const unsigned char *rec = stream + pos;
        uint32_t tot_len = u32(rec);
        if (tot_len < RECORD_HEADER)
            break;
        uint64_t lsn = stream_lsn(pos, seg_lsn, hdr0);
        if (pos + tot_len > used) {
            r.unfinished_lsn = lsn;
            break;
        }
        unsigned char info = rec[16], rmid = rec[17];
        uint32_t main_len = 0;
        r.records++;
        if (decode_blocks(rec, tot_len, new_layout, lsn, &refs, &main_len) < 0) {
            r.undecoded++;
        } else if (wanted(rmid, info)
                   && add_wanted(&wanted_records, lsn, pos + tot_len - main_len, main_len,
                                 rmid, info) < 0) {
            failed = 1;
            break;
        }
        if (refs.failed) { failed = 1; break; }
        pos += MAXALIGN(tot_len);
        if (pos >= own)   /* the next record starts in the next segment */
            r.end_lsn = seg_lsn + npages * WAL_PAGE;
        else
            r.end_lsn = stream_lsn(pos, seg_lsn, hdr0);
        if (rmid == RM_XLOG_ID && (info & 0xF0) == XLOG_SWITCH) {
            r.switched = 1;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (next.obj)
        PyBuffer_Release(&next);
    PyObject *result = NULL, *records = failed ? PyErr_NoMemory() : PyList_New(0);
    for (size_t i = 0; records && i < wanted_records.n; i++) {
        MainData *m = &wanted_records.items[i];
        PyObject *item = Py_BuildValue("(KBBy#)", (unsigned long long)m->lsn, m->rmid,
                                       m->info, stream + m->pos, (Py_ssize_t)m->len);
        if (!item || PyList_Append(records, item) < 0)
            Py_CLEAR(records);
        Py_XDECREF(item);
    }
    free(stream);
    free(wanted_records.items);
    if (records) {
        PyObject *unfinished = r.unfinished_lsn
            ? PyLong_FromUnsignedLongLong(r.unfinished_lsn) : Py_NewRef(Py_None);
        result = Py_BuildValue("{s:I,s:K,s:N,s:K,s:l,s:l,s:i,s:y#,s:O}",
                               "magic", magic,
                               "end_lsn", (unsigned long long)r.end_lsn,
                               "unfinished_lsn", unfinished,
                               "continued", (unsigned long long)r.continued,
                               "records", r.records, "undecoded", r.undecoded,
                               "switched", r.switched,
                               "refs", refs.refs ? (const char *)refs.refs : "",
                               (Py_ssize_t)(refs.n * REF_SIZE),
                               "main_data", records);
        Py_DECREF(records);
    }
    free(refs.refs);
    return result;
}

/* ---- a change map's block numbers ------------------------------------------------------ */

typedef struct {
    uint32_t spc, db, rel, block;
} RelBlock;

static int rel_block_order(const void *a, const void *b)
{
    const RelBlock *x = a, *y = b;
    if (x->spc != y->spc) return x->spc < y->spc ? -1 : 1;
    if (x->db != y->db) return x->db < y->db ? -1 : 1;
    if (x->rel != y->rel) return x->rel < y->rel ? -1 : 1;
    if (x->block != y->block) return x->block < y->block ? -1 : 1;
    return 0;
}

static int u32_order(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The main-fork block references of ``refs`` (block_references' packed records) with an
 * LSN in [start, stop), per relation: {(spc, db, rel): bytes of sorted, distinct uint32}. */
static PyObject *blocks_by_relation(PyObject *self, PyObject *args)
{
    Py_buffer view;
    unsigned long long start, stop;
    if (!PyArg_ParseTuple(args, "y*KK", &view, &start, &stop))
        return NULL;
    if (view.len % REF_SIZE) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "refs is not a whole number of references");
        return NULL;
    }
    size_t n = (size_t)view.len / REF_SIZE, kept = 0;
    RelBlock *items = malloc((n ? n : 1) * sizeof(RelBlock));
    if (!items) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    const unsigned char *p = view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (size_t i = 0; i < n; i++, p += REF_SIZE) {
        uint64_t lsn = u64(p);
        if (lsn < start || lsn >= stop || u32(p + 20) != 0)   /* the main fork only */
            continue;
        items[kept++] = (RelBlock){u32(p + 8), u32(p + 12), u32(p + 16), u32(p + 24)};
    }
    qsort(items, kept, sizeof(RelBlock), rel_block_order);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *result = PyDict_New();
    uint32_t *blocks = malloc((kept ? kept : 1) * sizeof(uint32_t));
    if (!result || !blocks) {
        free(items);
        free(blocks);
        Py_XDECREF(result);
        return PyErr_NoMemory();
    }
    for (size_t i = 0; i < kept;) {
        size_t j = i, m = 0;
        while (j < kept && items[j].spc == items[i].spc && items[j].db == items[i].db
               && items[j].rel == items[i].rel) {
            if (m == 0 || blocks[m - 1] != items[j].block)
                blocks[m++] = items[j].block;
            j++;
        }
        PyObject *key = Py_BuildValue("(III)", items[i].spc, items[i].db, items[i].rel);
        PyObject *value = PyBytes_FromStringAndSize((const char *)blocks,
                                                    (Py_ssize_t)(m * sizeof(uint32_t)));
        if (!key || !value || PyDict_SetItem(result, key, value) < 0) {
            Py_XDECREF(key);
            Py_XDECREF(value);
            Py_DECREF(result);
            free(items);
            free(blocks);
            return NULL;
        }
        Py_DECREF(key);
        Py_DECREF(value);
        i = j;
    }
    free(items);
    free(blocks);
    return result;
}

/* The uint32 values of ``data`` (native order, any order, repeats allowed), sorted, each
 * once, as bytes of the same kind. */
static PyObject *sorted_unique(PyObject *self, PyObject *args)
{
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view))
        return NULL;
    if (view.len % sizeof(uint32_t)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "data is not a whole number of uint32 values");
        return NULL;
    }
    size_t n = (size_t)view.len / sizeof(uint32_t), m = 0;
    uint32_t *values = malloc((n ? n : 1) * sizeof(uint32_t));
    if (!values) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    memcpy(values, view.buf, n * sizeof(uint32_t));
    PyBuffer_Release(&view);
    Py_BEGIN_ALLOW_THREADS
    qsort(values, n, sizeof(uint32_t), u32_order);
    for (size_t i = 0; i < n; i++)
        if (m == 0 || values[m - 1] != values[i])
            values[m++] = values[i];
    Py_END_ALLOW_THREADS
    PyObject *out = PyBytes_FromStringAndSize((const char *)values,
                                              (Py_ssize_t)(m * sizeof(uint32_t)));
    free(values);
    return out;
}

/* Runs (first - start, count) of the sorted, distinct uint32 ``blocks`` that lie in
 * [start, stop): the pages of one segment file of a relation, numbered from its start. */
static PyObject *block_runs(PyObject *self, PyObject *args)
{
    Py_buffer view;
    unsigned long long start, stop;
    if (!PyArg_ParseTuple(args, "y*KK", &view, &start, &stop))
        return NULL;
    const uint32_t *b = view.buf;
    size_t n = (size_t)view.len / sizeof(uint32_t), lo = 0, hi = n;
    while (lo < hi) {   /* the first block >= start */
        size_t mid = lo + (hi - lo) / 2;
        if (b[mid] < start) lo = mid + 1; else hi = mid;
    }
    PyObject *runs = PyList_New(0);
    for (size_t i = lo; runs && i < n && b[i] < stop;) {
        size_t j = i + 1;
        while (j < n && b[j] < stop && b[j] == b[j - 1] + 1)
            j++;
        PyObject *run = Py_BuildValue("(Kn)", (unsigned long long)(b[i] - start),
                                      (Py_ssize_t)(j - i));
        if (!run || PyList_Append(runs, run) < 0) {
            Py_XDECREF(run);
            Py_CLEAR(runs);
        } else {
            Py_DECREF(run);
        }
        i = j;
    }
    PyBuffer_Release(&view);
    return runs;
}

static PyMethodDef methods[] = {
    {"scan_segment", scan_segment, METH_VARARGS,
     "(end_lsn, first_xact_time, last_xact_time, xacts, switched, [(name, time, lsn)])"},
    {"block_references", block_references, METH_VARARGS,
     "block_references(data, seg_lsn, next=None): the block references of a segment's "
     "records, and the main data of those that create, cut or drop files "
     "(docs/change-map.md); with the next segment's bytes, a record crossing into it is "
     "read whole"},
    {"blocks_by_relation", blocks_by_relation, METH_VARARGS,
     "blocks_by_relation(refs, start_lsn, stop_lsn): the main-fork blocks referenced in the "
     "range, per relation: {(spc, db, rel): bytes of sorted, distinct native uint32}"},
    {"sorted_unique", sorted_unique, METH_VARARGS,
     "sorted_unique(data): native uint32 values sorted, each once, as bytes"},
    {"block_runs", block_runs, METH_VARARGS,
     "block_runs(blocks, start, stop): runs (first - start, count) of sorted, distinct "
     "uint32 blocks in [start, stop)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_walscan",
                                    "What point-in-time restore needs from a WAL segment", -1,
                                    methods};

PyMODINIT_FUNC PyInit__walscan(void) { return PyModule_Create(&module); }
