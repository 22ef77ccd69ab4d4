/* natgrad/safetensors.h: export of host tensors in the safetensors format
 * (https://github.com/huggingface/safetensors), for loading by other frameworks.
 *
 * Layout: u64 little-endian N | N bytes of UTF-8 JSON | byte buffer. The JSON object maps each
 * tensor name to {"dtype": "F32"|"F64"|"F16"|"BF16", "shape": [...], "data_offsets": [begin, end]}
 * (offsets relative to the start of the byte buffer) and, when metadata is given, "__metadata__"
 * to an object of string values. The JSON is padded with spaces so that N is a multiple of 8.
 * Tensors are stored in the order given, contiguously, row-major, little-endian. */
#ifndef NATGRAD_SAFETENSORS_H
#define NATGRAD_SAFETENSORS_H

#include <stdint.h>

#include "natgrad/dtype.h"
#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NG_ST_MAX_NDIM 16                      /* dimensions accepted per tensor */
#define NG_ST_MAX_HEADER ((uint64_t)100000000) /* JSON header limit of the reference reader */

typedef struct ng_st_tensor {
    const char *name;
    ng_dtype dtype;
    int ndim;              /* 0 (a scalar) .. NG_ST_MAX_NDIM */
    const uint64_t *shape; /* row-major, slowest first; dims may be 0 (an empty tensor) */
    const void *data;      /* row-major host bytes; may be NULL only for an empty tensor */
} ng_st_tensor;

/* Write n tensors and n_meta metadata pairs to path atomically (ng_wfile: path.tmp, fsync,
 * rename; on failure the previous file is untouched and no .tmp is left). Names, metadata keys and
 * values must be valid UTF-8 (they are JSON-escaped); tensor names must be non-empty, unique and
 * not "__metadata__"; metadata keys must be unique. Values are written as given (NaN included).
 * Errors: NG_ERR_INVALID_ARG (names, shapes, dtype, sizes), NG_ERR_IO (prefixed
 * "safetensors <path>: "), NG_ERR_OOM, NG_ERR_UNSUPPORTED on a big-endian host. */
ng_status ng_safetensors_write(const char *path, int n, const ng_st_tensor *tensors,
                               const char *const *meta_keys, const char *const *meta_values,
                               int n_meta);

#ifdef __cplusplus
}
#endif
#endif
