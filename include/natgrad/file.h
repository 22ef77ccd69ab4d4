/* natgrad/file.h: opening files for reading, and the atomic writer of every file natgrad writes
 * whole (checkpoints, IDX files, safetensors exports).
 *
 * Reading: ng_file_open_read accepts regular files only. It opens with O_NONBLOCK so that a FIFO
 * given by mistake is refused at once instead of blocking until a writer appears, then clears
 * O_NONBLOCK for the normal blocking reads that follow.
 *
 * Writing: ng_wfile writes PATH.tmp, then ng_wfile_commit flushes, fsyncs, closes, renames it onto
 * PATH and fsyncs the directory, so PATH is always either the old file or the complete new one.
 * Any failure removes PATH.tmp and leaves PATH untouched. Messages name the target path and the
 * reason ("x.ckpt: write failed: No space left on device"); callers prefix what the file is
 * ("checkpoint ") with ng_error_wrap. */
#ifndef NATGRAD_FILE_H
#define NATGRAD_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Open `path` read-only (O_CLOEXEC) and return its descriptor and size. `what` names the kind of
 * file in messages ("checkpoint", "data file"; NULL means "file"). Anything but a regular file is
 * refused with NG_ERR_IO and a message naming its type, e.g.
 * "data file /tmp/p: is a FIFO (named pipe), not a regular file"; a missing or unreadable file is
 * NG_ERR_IO with strerror. On success the descriptor is blocking and owned by the caller. */
ng_status ng_file_open_read(const char *path, const char *what, int *fd_out, uint64_t *size_out);

/* "regular file", "directory", "FIFO (named pipe)", "character device", "block device", "socket",
 * "symbolic link" or "special file" for a st_mode value. */
const char *ng_file_type_name(unsigned mode);

/* Read exactly n bytes at offset off (pread, retried on EINTR and short reads). A file shorter
 * than off + n is NG_ERR_FORMAT ("truncated"); a read error is NG_ERR_IO. Messages name
 * "<what> <path>". */
ng_status ng_file_pread_all(int fd, const char *what, const char *path, void *buf, size_t n,
                            uint64_t off);

typedef struct ng_wfile {
    FILE *f;          /* PATH.tmp while open, else NULL */
    char path[4096];  /* the target */
    char tmp[4200];   /* path + ".tmp" */
    uint32_t crc;     /* zlib crc32 of every byte written so far */
    uint64_t bytes;   /* bytes written so far */
    ng_status status; /* NG_OK, or the first failure (sticky) */
    char msg[512];    /* the message of the first failure, re-recorded by every later call */
} ng_wfile;

/* Create (or truncate) path.tmp for writing. path must be shorter than 4096 bytes. An existing
 * path that is not a regular file (a directory, a device such as /dev/full, a FIFO) is refused
 * with NG_ERR_IO before anything is created, so a rename can never replace it; a symbolic link
 * at path is replaced by the new file (the link's target is left alone). */
ng_status ng_wfile_open(ng_wfile *w, const char *path);
/* Append n bytes. Errors are sticky: after a failure every call (write or commit) returns the
 * same status and message. Updates w->crc and w->bytes. */
ng_status ng_wfile_write(ng_wfile *w, const void *p, size_t n);
/* fflush, fsync, fclose (all checked), rename path.tmp onto path, fsync the directory. On failure
 * before the rename the temporary file is removed and path is untouched. A failure of the final
 * directory fsync is reported (the new file is then in place but not known to be durable);
 * filesystems that cannot fsync a directory (EINVAL) are accepted. */
ng_status ng_wfile_commit(ng_wfile *w);
/* Close and remove the temporary file (safe on a zeroed, failed, committed or aborted writer). */
void ng_wfile_abort(ng_wfile *w);

#ifdef __cplusplus
}
#endif
#endif
