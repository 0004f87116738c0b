/*
 * PostgreSQL data page checksums, for dbsafe's backup readers.
 *
 * The algorithm is PostgreSQL's (src/include/storage/checksum_impl.h): the page is seen as
 * 64 rows of 32 uint32 words; 32 lanes each mix one word per row with an FNV-1a-like step,
 * then two rounds of zeros; the lanes are xored together, the block number is mixed in,
 * and the result is folded to 16 bits, never 0. pd_checksum (bytes 8-9) counts as zero.
 * Written here because no maintained library exposes it; the loop runs without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PAGE_SIZE 8192
#define N_SUMS 32
#define FNV_PRIME 16777619u

static const uint32_t base_offsets[N_SUMS] = {
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2,
    0x83E13D2C, 0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C,
    0xF718902A, 0x0B1C9CDB, 0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979,
    0xCCA6C0B2, 0x304A0979, 0x85AA43D4, 0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
    0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756};

static inline uint32_t mix(uint32_t sum, uint32_t value)
{
    uint32_t tmp = sum ^ value;
    return tmp * FNV_PRIME ^ (tmp >> 17);
}

/* Built twice, for AVX2 and for any x86-64, the right one chosen when the module loads
 * (GCC's target_clones): the 32 lanes are what AVX2's 8-wide multiplies are made for, and
 * baseline x86-64 (SSE2) has no 32-bit vector multiply. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static uint16_t page_checksum(const unsigned char *page, uint32_t blkno)
{
    uint32_t sums[N_SUMS];
    uint32_t words[PAGE_SIZE / 4];
    uint32_t result = 0;

    memcpy(words, page, PAGE_SIZE);
    words[2] &= 0xFFFF0000u; /* pd_checksum, little-endian, counts as zero */
    memcpy(sums, base_offsets, sizeof(sums));
    for (int i = 0; i < PAGE_SIZE / (4 * N_SUMS); i++)
        for (int j = 0; j < N_SUMS; j++)
            sums[j] = mix(sums[j], words[i * N_SUMS + j]);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < N_SUMS; j++)
            sums[j] = mix(sums[j], 0);
    for (int j = 0; j < N_SUMS; j++)
        result ^= sums[j];
    result ^= blkno;
    return (uint16_t) ((result % 65535) + 1);
}

static int all_zero(const unsigned char *page)
{
    for (int i = 0; i < PAGE_SIZE; i++)
        if (page[i])
            return 0;
    return 1;
}

/* checksums(data, first_blkno) -> bytes of uint16 checksums, one per whole page */
static PyObject *checksums(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    unsigned long long first;
    if (!PyArg_ParseTuple(args, "y*K", &buf, &first))
        return NULL;
    Py_ssize_t pages = buf.len / PAGE_SIZE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, pages * 2);
    if (out == NULL) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    uint16_t *dst = (uint16_t *) PyBytes_AS_STRING(out);
    const unsigned char *src = buf.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t p = 0; p < pages; p++)
        dst[p] = page_checksum(src + p * PAGE_SIZE, (uint32_t) (first + p));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    return out;
}

/* bad_pages(data, first_blkno) -> list of page indexes whose stored checksum is wrong
 * (all-zero pages are valid: PostgreSQL's PageIsVerified says so) */
static PyObject *bad_pages(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    unsigned long long first;
    if (!PyArg_ParseTuple(args, "y*K", &buf, &first))
        return NULL;
    Py_ssize_t pages = buf.len / PAGE_SIZE;
    const unsigned char *src = buf.buf;
    Py_ssize_t n_bad = 0, cap = 16;
    Py_ssize_t *bad = PyMem_RawMalloc(cap * sizeof(Py_ssize_t));
    if (bad == NULL) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    int oom = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t p = 0; p < pages && !oom; p++) {
        const unsigned char *page = src + p * PAGE_SIZE;
        uint16_t stored;
        memcpy(&stored, page + 8, 2);
        if (page_checksum(page, (uint32_t) (first + p)) == stored || all_zero(page))
            continue;
        if (n_bad == cap) {
            Py_ssize_t *grown = PyMem_RawRealloc(bad, 2 * cap * sizeof(Py_ssize_t));
            if (grown == NULL) {
                oom = 1;
                break;
            }
            bad = grown;
            cap *= 2;
        }
        bad[n_bad++] = p;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (oom) {
        PyMem_RawFree(bad);
        return PyErr_NoMemory();
    }
    PyObject *list = PyList_New(n_bad);
    for (Py_ssize_t i = 0; list != NULL && i < n_bad; i++)
        PyList_SET_ITEM(list, i, PyLong_FromSsize_t(bad[i]));
    PyMem_RawFree(bad);
    return list;
}

static PyMethodDef methods[] = {
    {"checksums", checksums, METH_VARARGS, "uint16 checksums of each whole page, as bytes"},
    {"bad_pages", bad_pages, METH_VARARGS, "indexes of pages whose stored checksum is wrong"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pagecheck",
                                    "PostgreSQL page checksums", -1, methods};

PyMODINIT_FUNC PyInit__pagecheck(void) { return PyModule_Create(&module); }
