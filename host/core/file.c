/* file.c: regular-file opening for readers and the atomic writer (natgrad/file.h).
 *
 * Must not: block on a FIFO, follow a write into a device or directory at the target path, leave
 * PATH.tmp behind after a failure, or touch the old PATH before the new file is complete and
 * synced. */
#include "natgrad/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

const char *ng_file_type_name(unsigned mode) {
    mode_t m = (mode_t)mode;
    if (S_ISREG(m)) return "regular file";
    if (S_ISDIR(m)) return "directory";
    if (S_ISFIFO(m)) return "FIFO (named pipe)";
    if (S_ISCHR(m)) return "character device";
    if (S_ISBLK(m)) return "block device";
    if (S_ISSOCK(m)) return "socket";
    if (S_ISLNK(m)) return "symbolic link";
    return "special file";
}

ng_status ng_file_open_read(const char *path, const char *what, int *fd_out, uint64_t *size_out) {
    struct stat st;
    int fd, fl, err;
    if (fd_out) *fd_out = -1;
    if (size_out) *size_out = 0;
    if (!what) what = "file";
    if (!path || !fd_out)
        return ng_error(NG_ERR_INVALID_ARG, "ng_file_open_read(%s): NULL path or fd_out", what);
    if (!*path) return ng_error(NG_ERR_INVALID_ARG, "%s: empty path", what);
    do
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        err = errno;
        /* a socket cannot be opened at all (ENXIO): name its type rather than "No such device" */
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
            return ng_error(NG_ERR_IO, "%s %s: is a %s, not a regular file", what, path,
                            ng_file_type_name((unsigned)st.st_mode));
        return ng_error(NG_ERR_IO, "%s %s: cannot open: %s", what, path, strerror(err));
    }
    if (fstat(fd, &st) != 0) {
        err = errno;
        close(fd);
        return ng_error(NG_ERR_IO, "%s %s: cannot stat: %s", what, path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ng_error(NG_ERR_IO, "%s %s: is a %s, not a regular file", what, path,
                        ng_file_type_name((unsigned)st.st_mode));
    }
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        err = errno;
        close(fd);
        return ng_error(NG_ERR_IO, "%s %s: fcntl failed: %s", what, path, strerror(err));
    }
    *fd_out = fd;
    if (size_out) *size_out = (uint64_t)st.st_size;
    return NG_OK;
}

ng_status ng_file_pread_all(int fd, const char *what, const char *path, void *buf, size_t n,
                            uint64_t off) {
    unsigned char *p = buf;
    size_t got = 0;
    if (!what) what = "file";
    while (got < n) {
        size_t ask = n - got;
        ssize_t r;
        if (ask > ((size_t)1 << 30)) ask = (size_t)1 << 30;
        if (off + got > (uint64_t)INT64_MAX)
            return ng_error(NG_ERR_FORMAT, "%s %s: offset %llu is beyond any file", what, path,
                            (unsigned long long)(off + got));
        r = pread(fd, p + got, ask, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR) continue;
            return ng_error(NG_ERR_IO, "%s %s: read failed at byte %llu: %s", what, path,
                            (unsigned long long)(off + got), strerror(errno));
        }
        if (r == 0)
            return ng_error(NG_ERR_FORMAT,
                            "%s %s: truncated: ends at byte %llu, %zu more bytes were expected",
                            what, path, (unsigned long long)(off + got), n - got);
        got += (size_t)r;
    }
    return NG_OK;
}

/* ---- atomic writer --------------------------------------------------------------------------- */

/* Record the first failure of w (status and printf-style message, truncated to fit) and return
 * it; the message is also recorded with ng_error. */
static ng_status wset(ng_wfile *w, ng_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static ng_status wset(ng_wfile *w, ng_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg, sizeof w->msg, fmt, ap);
    va_end(ap);
    w->status = code;
    return ng_error(code, "%s", w->msg);
}

/* Close (ignoring errors) and remove the temporary file. */
static void discard_tmp(ng_wfile *w) {
    if (w->f) {
        fclose(w->f);
        w->f = NULL;
        unlink(w->tmp);
    }
}

ng_status ng_wfile_open(ng_wfile *w, const char *path) {
    struct stat st;
    size_t len;
    int fd, fl, err;
    if (!w) return ng_error(NG_ERR_INVALID_ARG, "ng_wfile_open: NULL writer");
    memset(w, 0, sizeof *w);
    w->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    if (!path || !*path)
        return wset(w, NG_ERR_INVALID_ARG, "ng_wfile_open: %s path", path ? "empty" : "NULL");
    len = strlen(path);
    if (len >= sizeof w->path) {
        return wset(w, NG_ERR_INVALID_ARG, "%.64s...: path of %zu bytes is too long (limit %zu)",
                    path, len, sizeof w->path - 1);
    }
    memcpy(w->path, path, len + 1);
    memcpy(w->tmp, path, len);
    memcpy(w->tmp + len, ".tmp", 5);
    /* never let a rename replace a directory, a device (/dev/full, /dev/null) or a FIFO */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        return wset(w, NG_ERR_IO, "%s: is a %s, not a regular file; refusing to replace it", path,
                    ng_file_type_name((unsigned)st.st_mode));
    }
    /* O_NONBLOCK: a FIFO at path.tmp fails (ENXIO) instead of blocking; O_NOFOLLOW: a link there
     * is not followed. The fstat below refuses anything else that is not a regular file. */
    do
        fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW, 0666);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        err = errno;
        return wset(w, NG_ERR_IO, "%s: cannot create the temporary file %s: %s", path, w->tmp,
                    strerror(err));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        /* not ours to remove */
        close(fd);
        return wset(w, NG_ERR_IO, "%s: the temporary file %s is not a regular file", path, w->tmp);
    }
    fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fl = fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    w->f = fl >= 0 ? fdopen(fd, "wb") : NULL;
    if (!w->f) {
        err = errno;
        close(fd);
        unlink(w->tmp);
        return wset(w, NG_ERR_IO, "%s: cannot open the temporary file: %s", w->path, strerror(err));
    }
    return NG_OK;
}

ng_status ng_wfile_write(ng_wfile *w, const void *p, size_t n) {
    if (!w) return ng_error(NG_ERR_INVALID_ARG, "ng_wfile_write: NULL writer");
    if (w->status != NG_OK) return ng_error(w->status, "%s", w->msg);
    if (!w->f)
        return wset(w, NG_ERR_INVALID_ARG, "%s: write on a writer that is not open", w->path);
    if (n == 0) return NG_OK;
    if (!p) {
        return wset(w, NG_ERR_INVALID_ARG, "%s: write of %zu bytes from NULL", w->path, n);
    }
    errno = 0;
    if (fwrite(p, 1, n, w->f) != n) {
        int err = errno ? errno : EIO;
        discard_tmp(w);
        return wset(w, NG_ERR_IO, "%s: write failed: %s", w->path, strerror(err));
    }
    {
        const unsigned char *b = p;
        size_t left = n;
        while (left) { /* crc32 takes a uInt length */
            uInt k = left > (size_t)UINT_MAX ? UINT_MAX : (uInt)left;
            w->crc = (uint32_t)crc32(w->crc, b, k);
            b += k;
            left -= k;
        }
    }
    w->bytes += n;
    return NG_OK;
}

/* Directory part of path ("." when it has none) into buf. */
static void dir_of(const char *path, char *buf, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(buf, cap, ".");
    } else if (slash == path) {
        snprintf(buf, cap, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= cap) n = cap - 1;
        memcpy(buf, path, n);
        buf[n] = 0;
    }
}

ng_status ng_wfile_commit(ng_wfile *w) {
    char dir[4096];
    int err, dfd, r;
    FILE *f;
    if (!w) return ng_error(NG_ERR_INVALID_ARG, "ng_wfile_commit: NULL writer");
    if (w->status != NG_OK) {
        discard_tmp(w);
        return ng_error(w->status, "%s", w->msg);
    }
    if (!w->f) {
        return wset(w, NG_ERR_INVALID_ARG, "%s: commit of a writer that is not open", w->path);
    }
    errno = 0;
    if (fflush(w->f) != 0) {
        err = errno ? errno : EIO;
        discard_tmp(w);
        return wset(w, NG_ERR_IO, "%s: write failed: %s", w->path, strerror(err));
    }
    if (fsync(fileno(w->f)) != 0) {
        err = errno;
        discard_tmp(w);
        return wset(w, NG_ERR_IO, "%s: fsync failed: %s", w->path, strerror(err));
    }
    f = w->f;
    w->f = NULL;
    if (fclose(f) != 0) {
        err = errno;
        unlink(w->tmp);
        return wset(w, NG_ERR_IO, "%s: close failed: %s", w->path, strerror(err));
    }
    if (rename(w->tmp, w->path) != 0) {
        err = errno;
        unlink(w->tmp);
        return wset(w, NG_ERR_IO, "%s: cannot rename the temporary file onto it: %s", w->path,
                    strerror(err));
    }
    dir_of(w->path, dir, sizeof dir);
    do
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    while (dfd < 0 && errno == EINTR);
    if (dfd < 0) {
        err = errno;
        return wset(w, NG_ERR_IO, "%s: written, but its directory cannot be opened to sync it: %s",
                    w->path, strerror(err));
    }
    r = fsync(dfd);
    err = errno;
    close(dfd);
    if (r != 0 && err != EINVAL && err != ENOTSUP && err != EROFS)
        return wset(w, NG_ERR_IO, "%s: written, but syncing its directory failed: %s", w->path,
                    strerror(err));
    return NG_OK;
}

void ng_wfile_abort(ng_wfile *w) {
    if (!w) return;
    discard_tmp(w);
}
