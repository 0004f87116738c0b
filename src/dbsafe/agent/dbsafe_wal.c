/*
 * dbsafe's archive_command, native: hand one WAL file to the dbsafe agent and wait for its
 * verdict. The same protocol as client.py (the fallback when no C compiler is at hand):
 * one JSON line {"op": "push", "cwd", "path", "name"} on the agent's Unix socket, one JSON
 * line back; exit 0 only on {"ok": true ...}, else 1 and PostgreSQL keeps the file and
 * retries.
 *
 * Why C: PostgreSQL starts the archive command once per 16 MB segment, on every node of a
 * replica set. A Python interpreter costs ~37 ms of CPU per start on the benchmark machine;
 * this costs ~1 ms (docs/log-chain.md, *Archiving: the agent*).
 *
 * Built by dbsafe.engines.postgres.agent_process.install_client with SOCKET_PATH defined.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SOCKET_PATH
#error "build with -DSOCKET_PATH=\"...\""
#endif

#define TIMEOUT_SECONDS 600
#define REPLY_MAX 65536

/* Append the JSON string literal of ``s`` to ``out`` (capacity ``cap``); 0 when it fits. */
static int json_string(char *out, size_t cap, size_t *len, const char *s)
{
    if (*len + 1 >= cap)
        return -1;
    out[(*len)++] = '"';
    for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
        char esc[8];
        const char *piece = esc;
        if (*p == '"')
            piece = "\\\"";
        else if (*p == '\\')
            piece = "\\\\";
        else if (*p < 0x20)
            snprintf(esc, sizeof esc, "\\u%04x", *p);
        else {
            esc[0] = (char) *p;
            esc[1] = '\0';
        }
        size_t n = strlen(piece);
        if (*len + n + 1 >= cap)
            return -1;
        memcpy(out + *len, piece, n);
        *len += n;
    }
    out[(*len)++] = '"';
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "push") != 0) {
        fprintf(stderr, "usage: dbsafe-wal push <path of the WAL file>\n");
        return 2;
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        fprintf(stderr, "dbsafe: cannot read the current folder: %s\n", strerror(errno));
        return 1;
    }
    char path[2 * PATH_MAX + 2];
    if (argv[2][0] == '/')
        snprintf(path, sizeof path, "%s", argv[2]);
    else
        snprintf(path, sizeof path, "%s/%s", cwd, argv[2]);
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;

    /* {"op": "push", "cwd": ..., "path": ..., "name": ...} and a newline */
    static const char *keys[] = {"{\"op\": \"push\", \"cwd\": ", ", \"path\": ",
                                 ", \"name\": "};
    const char *values[] = {cwd, path, name};
    char request[8 * PATH_MAX];
    size_t len = 0;
    for (int i = 0; i < 3; i++) {
        size_t k = strlen(keys[i]);
        if (len + k >= sizeof request ||
            (memcpy(request + len, keys[i], k), len += k,
             json_string(request, sizeof request, &len, values[i]))) {
            fprintf(stderr, "dbsafe: path too long: %s\n", path);
            return 1;
        }
    }
    if (len + 2 >= sizeof request) {
        fprintf(stderr, "dbsafe: path too long: %s\n", path);
        return 1;
    }
    request[len++] = '}';
    request[len++] = '\n';

    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", SOCKET_PATH);
    struct timeval timeout = {.tv_sec = TIMEOUT_SECONDS};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) ||
        connect(fd, (struct sockaddr *) &addr, sizeof addr)) {
        fprintf(stderr, "dbsafe: the agent is not reachable at %s (%s); start it with "
                "`dbsafe agent start` (PostgreSQL keeps the WAL and retries)\n",
                SOCKET_PATH, strerror(errno));
        return 1;
    }
    for (size_t sent = 0; sent < len;) {
        ssize_t n = write(fd, request + sent, len - sent);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "dbsafe: lost the agent while archiving %s: %s\n", argv[2],
                    strerror(errno));
            return 1;
        }
        sent += (size_t) n;
    }
    static char reply[REPLY_MAX + 1];
    size_t got = 0;
    while (got < REPLY_MAX && (got == 0 || reply[got - 1] != '\n')) {
        ssize_t n = read(fd, reply + got, REPLY_MAX - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t) n;
    }
    close(fd);
    reply[got] = '\0';
    if (strncmp(reply, "{\"ok\": true", 11) == 0)
        return 0;
    if (got == 0) {
        fprintf(stderr, "dbsafe: no answer from the agent for %s\n", argv[2]);
        return 1;
    }
    /* the agent's message: the "error" string of the reply, as it is (escapes kept) */
    const char *error = strstr(reply, "\"error\": \"");
    const char *end = NULL;
    if (error) {
        error += 10;
        for (end = error; *end && !(*end == '"' && end[-1] != '\\'); end++)
            ;
    }
    if (error && *end)
        fprintf(stderr, "dbsafe: %s not archived: %.*s\n", argv[2], (int) (end - error), error);
    else
        fprintf(stderr, "dbsafe: %s not archived: %s", argv[2], reply);
    return 1;
}
