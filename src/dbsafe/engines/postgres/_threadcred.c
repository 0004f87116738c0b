/*
 * The effective user id of the calling thread alone.
 *
 * POSIX, and glibc's seteuid/setresuid with it, change the credentials of every thread of
 * a process; Linux keeps credentials per thread, and the raw system call changes only the
 * caller's. dbsafe, running as root, connects to a cluster whose pg_hba.conf says `peer`
 * from a thread of its own that takes the server's OS user as its effective user id for
 * that connect() and nothing else (engines/postgres/client.py); every other thread stays
 * root. The real and saved user ids stay 0: the thread can take root back, and no process
 * of that user may signal or trace it (both need all three ids to match).
 * Written in C because the system call's number differs between architectures, and
 * <sys/syscall.h> knows it where ctypes does not.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static PyObject *set_thread_euid(PyObject *self, PyObject *args)
{
    unsigned int uid;
    if (!PyArg_ParseTuple(args, "I", &uid))
        return NULL;
    if (syscall(SYS_setresuid, (uid_t)-1, (uid_t)uid, (uid_t)-1) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"set_thread_euid", set_thread_euid, METH_VARARGS,
     "set_thread_euid(uid): the calling thread's effective user id (real and saved unchanged)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_threadcred",
                                    "Per-thread effective user id (Linux)", -1, methods};

PyMODINIT_FUNC PyInit__threadcred(void) { return PyModule_Create(&module); }
