/* natgrad/checkpoint.h: the checkpoint container shared by every model and optimizer (in the
 * spirit of gguf): typed key/value fields and named tensors, held in host memory. It knows nothing
 * of devices; a tensor added with a fetch callback is copied from wherever it lives at write time.
 *
 * File layout (version 2), every integer little-endian:
 *
 *   "NGCK" | u32 version (= 2) | u64 header_bytes | u64 n_kv | u64 n_tensors
 *   n_kv entries:      u32 key_len | key | u32 type | value
 *                        type 1 u64 (8 bytes), 2 i64 (8), 3 f32 (4), 4 f64 (8),
 *                        5 str (u32 len + len bytes, no NUL)
 *   n_tensors entries: u32 name_len | name | u32 dtype (ng_dtype code) | u32 ndim (1..4) |
 *                      u64 dims[ndim] (slowest first) | u64 offset
 *   u32 header_crc     zlib crc32 of bytes [0, header_bytes): everything above
 *   zero padding to a multiple of 64 bytes: the payload starts at payload_start
 *   payload            tensor i at payload_start + offset_i; offset_0 = 0 and each later offset is
 *                      the first multiple of 64 at or after the end of the previous tensor (the
 *                      gaps are zero bytes); the payload ends where the last tensor ends
 *   u32 payload_crc    crc32 of the payload bytes (gaps included)
 *
 * header_bytes counts from the magic to the end of the tensor directory. Keys and tensor names are
 * 1..255 bytes of [A-Za-z0-9_.:/-], unique among the keys and among the tensor names. Tensor
 * element data is the host's little-endian representation, row-major (dims[0] slowest).
 *
 * Reading validates everything before use and names the file and the field in each error
 * (NG_ERR_FORMAT): magic (a file starting "NGRBMCK1" is the previous RBM checkpoint format and is
 * reported as such), version, header_bytes against the file length before anything is allocated,
 * counts against what the header could hold, header CRC, every entry and tensor, the zero
 * padding, the payload length (exactly the end of the last tensor, then the CRC), payload CRC.
 * Non-finite values are refused: NaN/Inf in f32/f64 fields and in f32, f64, f16 and bf16 tensor
 * payloads. A file smaller than its claims never makes the reader allocate more than a small
 * multiple of its size. Only regular files are read (a FIFO is refused at once, see file.h).
 *
 * The container keeps these invariants, so users need not re-check: every key and name is valid
 * and unique, every float field and every float tensor held with data is finite. */
#ifndef NATGRAD_CHECKPOINT_H
#define NATGRAD_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "natgrad/dtype.h"
#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NG_CKPT_VERSION 2u
#define NG_CKPT_MAX_NDIM 4
#define NG_CKPT_MAX_NAME 255 /* bytes in a key or tensor name */
#define NG_CKPT_ALIGN 64     /* alignment of the payload and of every tensor in it */

typedef struct ng_ckpt ng_ckpt; /* opaque */

typedef enum ng_kv_type {
    NG_KV_U64 = 1,
    NG_KV_I64 = 2,
    NG_KV_F32 = 3,
    NG_KV_F64 = 4,
    NG_KV_STR = 5
} ng_kv_type;

typedef struct ng_ckpt_tensor {
    const char *name;
    ng_dtype dtype;
    int ndim;
    uint64_t dims[4]; /* unused entries are 0 */
    uint64_t count;   /* product of dims */
    size_t bytes;     /* count * ng_dtype_size(dtype) */
    const void *data; /* host; NULL when read header-only or when added by callback */
} ng_ckpt_tensor;

/* Fills dst (bytes long) with the tensor's data at write time (e.g. a copy from the GPU). A
 * non-NG_OK return aborts the write (its message is kept, prefixed with the file and tensor). */
typedef ng_status (*ng_ckpt_fetch_fn)(void *user, void *dst, size_t bytes);

ng_status ng_ckpt_new(ng_ckpt **out);
void ng_ckpt_free(ng_ckpt *c); /* NULL ok */

/* Fields. A key set twice keeps its first position and takes the last value (and type). Invalid
 * keys and non-finite floats are NG_ERR_INVALID_ARG; a string may not exceed 2^32 - 1 bytes. */
ng_status ng_ckpt_set_u64(ng_ckpt *c, const char *key, uint64_t v);
ng_status ng_ckpt_set_i64(ng_ckpt *c, const char *key, int64_t v);
ng_status ng_ckpt_set_f32(ng_ckpt *c, const char *key, float v);
ng_status ng_ckpt_set_f64(ng_ckpt *c, const char *key, double v);
ng_status ng_ckpt_set_str(ng_ckpt *c, const char *key, const char *v);

/* Tensors, written in the order added. A repeated name, an invalid name, a dtype outside
 * ng_dtype, ndim outside 1..4, a dim of 0, a size that overflows, or non-finite float data is
 * NG_ERR_INVALID_ARG. add_tensor copies host_data now; add_tensor_cb calls fetch(user, dst, bytes)
 * when the checkpoint is written (each time it is written), and its data field stays NULL. */
ng_status ng_ckpt_add_tensor(ng_ckpt *c, const char *name, ng_dtype dtype, int ndim,
                             const uint64_t *dims, const void *host_data);
ng_status ng_ckpt_add_tensor_cb(ng_ckpt *c, const char *name, ng_dtype dtype, int ndim,
                                const uint64_t *dims, ng_ckpt_fetch_fn fetch, void *user);

/* Write atomically through ng_wfile (path.tmp, fsync, rename): on any failure (I/O, a fetch
 * callback's error, non-finite fetched data) the previous file at path is untouched and no .tmp is
 * left. Tensors are streamed; callback tensors go through one staging buffer of the largest
 * callback tensor's size. Errors are prefixed "checkpoint <path>: ". The output is a function of
 * the contents only (byte-identical for identical contents). */
ng_status ng_ckpt_write(const ng_ckpt *c, const char *path);

enum { NG_CKPT_READ_ALL = 0, NG_CKPT_HEADER_ONLY = 1 };
/* Read and validate a checkpoint. NG_CKPT_HEADER_ONLY reads the fields and the tensor directory
 * (tensor data stays NULL), checks the header CRC and the exact file length, not the payload. On
 * failure *out is NULL. Errors: NG_ERR_IO (cannot open, not a regular file, read error),
 * NG_ERR_FORMAT (content), NG_ERR_OOM. */
ng_status ng_ckpt_read(const char *path, int flags, ng_ckpt **out);

/* Lookups: NG_ERR_FORMAT naming the file and key when missing or of another type. get_str's string
 * lives as long as the container (until the key is set again or the container is freed). */
ng_status ng_ckpt_get_u64(const ng_ckpt *c, const char *key, uint64_t *v);
ng_status ng_ckpt_get_i64(const ng_ckpt *c, const char *key, int64_t *v);
ng_status ng_ckpt_get_f32(const ng_ckpt *c, const char *key, float *v);
ng_status ng_ckpt_get_f64(const ng_ckpt *c, const char *key, double *v);
ng_status ng_ckpt_get_str(const ng_ckpt *c, const char *key, const char **v);
int ng_ckpt_has(const ng_ckpt *c, const char *key);

/* Range-checked reads used to validate every field. The error names the file, the key, the value
 * and the allowed range, e.g. "checkpoint x.ckpt: field rbm.k = 0 is out of range [1, 1000]". */
/* A u64 or i64 entry in [lo, hi]. */
ng_status ng_ckpt_get_int(const ng_ckpt *c, const char *key, int64_t lo, int64_t hi, int64_t *v);
/* An f32 entry, finite and in [lo, hi]. */
ng_status ng_ckpt_get_float(const ng_ckpt *c, const char *key, double lo, double hi, float *v);
/* A str entry equal to one of names[0..n_names); *v is its index. The error lists the names. */
ng_status ng_ckpt_get_enum(const ng_ckpt *c, const char *key, const char *const *names,
                           int n_names, int *v);

/* Tensors: directory order; the pointers live as long as the container. */
int ng_ckpt_n_tensors(const ng_ckpt *c);
const ng_ckpt_tensor *ng_ckpt_tensor_at(const ng_ckpt *c, int i); /* NULL outside 0..n-1 */
const ng_ckpt_tensor *ng_ckpt_find(const ng_ckpt *c, const char *name); /* NULL when absent */
/* The tensor must exist with exactly this dtype and shape, and hold data (not header-only, not a
 * callback tensor); float payloads are finite (a container invariant). The error names the tensor,
 * what was expected and what was found, e.g.
 * "checkpoint x: tensor model.W has shape (784, 100), expected (784, 500)". */
ng_status ng_ckpt_expect(const ng_ckpt *c, const char *name, ng_dtype dtype, int ndim,
                         const uint64_t *dims, const void **data);

const char *ng_ckpt_path(const ng_ckpt *c); /* path it was read from ("" for new) */
/* Name the file a container stands for in messages (e.g. one converted from an older format). */
ng_status ng_ckpt_set_path(ng_ckpt *c, const char *path);

/* Fields, in file (or first-set) order, for listings such as `natgrad info CKPT`. */
int ng_ckpt_n_kv(const ng_ckpt *c);
/* Key of field i (NULL outside 0..n-1); *type (when not NULL) receives its type. */
const char *ng_ckpt_kv_at(const ng_ckpt *c, int i, ng_kv_type *type);
/* Field i's value as text into buf (always NUL-terminated when cap > 0): integers in decimal,
 * floats with enough digits to round-trip (%.9g / %.17g), strings quoted with C escapes for
 * quotes, backslashes and non-printable bytes. Returns buf ("" for a bad index). */
const char *ng_ckpt_kv_format(const ng_ckpt *c, int i, char *buf, size_t cap);
/* "u64", "i64", "f32", "f64", "str", or "?" */
const char *ng_kv_type_name(ng_kv_type t);

#ifdef __cplusplus
}
#endif
#endif
