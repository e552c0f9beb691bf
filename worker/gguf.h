/* gguf: read (mmap) and write GGUF v2/v3 files.
 *
 * Reader: gguf_open() maps the file and validates everything before it
 * returns: header, every metadata key/value (string lengths, array counts,
 * nesting), every tensor info (name, n_dims <= 4, each ne > 0, element count
 * without overflow, type known, row size a multiple of the block size, data
 * offset aligned and inside the file, tensors not overlapping). Nothing
 * afterwards reads outside the mapping. Errors: -EBADMSG for a corrupt or
 * hostile file, -ENOTSUP for a valid file with something we do not handle
 * (version 1 or a future version, big-endian files, arrays of arrays,
 * tensor types ggml has removed), -errno for I/O; err then holds a sentence
 * that names what (key, tensor, offset) is wrong.
 *
 * Tensor types: open accepts every type of ggml's numbering whose block
 * layout is known (IQ2_XXS, TQ1_0, ...), so inspect can list any model. Only
 * F32, F16, BF16 and the quantized types of quant.h can be loaded: a loader calls
 * gguf_check_loadable() (or gguf_tensor_check_loadable() per tensor) to get
 * -ENOTSUP with a message naming the tensor and its type.
 *
 * Only little-endian hosts are supported (checked at compile time). If the
 * file is truncated by someone else while it is mapped, reads fault (SIGBUS):
 * mmap cannot guard against that.
 *
 * The gguf_t and everything borrowed from it (strings, arrays, tensor data)
 * live until gguf_close(). A gguf_t is read-only after open: any thread may
 * read it concurrently.
 *
 * Writer: gguf_writer_* builds a file in memory (metadata + tensor infos),
 * then streams it out with the tensor data aligned to general.alignment. */
#ifndef GGUF_H
#define GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* metadata value types, as in the GGUF specification */
enum gguf_vtype {
	GGUF_VTYPE_UINT8 = 0,
	GGUF_VTYPE_INT8 = 1,
	GGUF_VTYPE_UINT16 = 2,
	GGUF_VTYPE_INT16 = 3,
	GGUF_VTYPE_UINT32 = 4,
	GGUF_VTYPE_INT32 = 5,
	GGUF_VTYPE_FLOAT32 = 6,
	GGUF_VTYPE_BOOL = 7,
	GGUF_VTYPE_STRING = 8,
	GGUF_VTYPE_ARRAY = 9,
	GGUF_VTYPE_UINT64 = 10,
	GGUF_VTYPE_INT64 = 11,
	GGUF_VTYPE_FLOAT64 = 12,
};

/* tensor types (ggml_type numbering); quant.h names the quantized ones
 * that are loaded. Other
 * ggml types (IQ2_XXS = 16, ...) are parsed and listed but not loadable. */
enum gguf_ttype {
	GGUF_TTYPE_F32 = 0,
	GGUF_TTYPE_F16 = 1,
	GGUF_TTYPE_Q8_0 = 8,
	GGUF_TTYPE_BF16 = 30,
};
#define GGUF_Q8_0_BLOCK 32	/* elements per Q8_0 block: f16 scale d + 32 x int8 */
#define GGUF_Q8_0_BYTES 34

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct gguf gguf_t;

typedef struct gguf_str {
	uint64_t len;
	const char *data;	/* borrowed, NOT NUL-terminated */
} gguf_str_t;

typedef struct gguf_tensor {
	const char *name;	/* borrowed, NUL-terminated copy owned by gguf_t */
	uint32_t type;		/* enum gguf_ttype */
	uint32_t n_dims;
	uint64_t ne[GGUF_MAX_DIMS];	/* ne[0] innermost; unused dims are 1 */
	uint64_t n_elements;
	uint64_t offset;	/* from the start of the data section */
	uint64_t nbytes;
	const void *data;	/* borrowed: points into the mapping */
} gguf_tensor_t;

/* Open and validate. *ret is owned by the caller (gguf_close). */
int gguf_open(const char *path, gguf_t **ret, char *err, size_t errlen);
/* Same over a caller's buffer (fuzzing, tests); buf must outlive the gguf_t. */
int gguf_open_buffer(const void *buf, size_t size, gguf_t **ret, char *err, size_t errlen);
void gguf_close(gguf_t **g);

uint32_t gguf_version(const gguf_t *g);
uint64_t gguf_n_kv(const gguf_t *g);
uint64_t gguf_n_tensors(const gguf_t *g);
size_t gguf_file_size(const gguf_t *g);
uint32_t gguf_alignment(const gguf_t *g);	/* general.alignment or 32 */
size_t gguf_data_offset(const gguf_t *g);	/* file offset of the tensor data section */

/* Metadata. Keys are looked up by exact name. Index-based access for
 * listing (inspect): */
const char *gguf_kv_key(const gguf_t *g, uint64_t i);	/* NUL-terminated, borrowed */
enum gguf_vtype gguf_kv_type(const gguf_t *g, uint64_t i);
int64_t gguf_find_kv(const gguf_t *g, const char *key);	/* index or -1 */

/* Typed getters: 0 on success, -ENOENT if absent, -EINVAL if the stored type
 * differs. Integer getters accept any integer type whose value fits, and
 * return -ERANGE when it does not (e.g. u32 4294967295 read as i32). */
int gguf_get_u32(const gguf_t *g, const char *key, uint32_t *ret);
int gguf_get_i32(const gguf_t *g, const char *key, int32_t *ret);
int gguf_get_u64(const gguf_t *g, const char *key, uint64_t *ret);
int gguf_get_i64(const gguf_t *g, const char *key, int64_t *ret);
int gguf_get_f32(const gguf_t *g, const char *key, float *ret);	/* f32 or f64 */
int gguf_get_f64(const gguf_t *g, const char *key, double *ret);	/* f32 or f64 */
int gguf_get_bool(const gguf_t *g, const char *key, bool *ret);
int gguf_get_str(const gguf_t *g, const char *key, gguf_str_t *ret);
/* Arrays: element type and count. Numeric arrays: *ret_data points at the
 * packed little-endian elements inside the mapping (may be unaligned: use
 * memcpy). String arrays: *ret_data is NULL, use gguf_get_arr_str.
 * Any ret_* may be NULL. -EINVAL if the key is not an array. */
int gguf_get_arr(const gguf_t *g, const char *key, enum gguf_vtype *ret_type,
		 uint64_t *ret_n, const void **ret_data);
/* i-th string of a string array (validated at open; O(1): offsets are indexed).
 * -ERANGE if i is past the end, -EINVAL if not a string array. */
int gguf_get_arr_str(const gguf_t *g, const char *key, uint64_t i, gguf_str_t *ret);
/* Same by kv index (for inspect). */
int gguf_kv_arr_info(const gguf_t *g, uint64_t kv, enum gguf_vtype *ret_type, uint64_t *ret_n);
int gguf_kv_arr_data(const gguf_t *g, uint64_t kv, const void **ret_data);	/* numeric arrays */
int gguf_kv_arr_str(const gguf_t *g, uint64_t kv, uint64_t i, gguf_str_t *ret);
/* Raw scalar value of kv i by index (for inspect): *ret points at the packed
 * little-endian value (gguf_vtype_size bytes; may be unaligned). Strings:
 * use gguf_kv_str. -EINVAL for arrays and strings. */
int gguf_kv_scalar(const gguf_t *g, uint64_t kv, const void **ret);
int gguf_kv_str(const gguf_t *g, uint64_t kv, gguf_str_t *ret);

/* Tensors. */
const gguf_tensor_t *gguf_tensor(const gguf_t *g, uint64_t i);
const gguf_tensor_t *gguf_find_tensor(const gguf_t *g, const char *name);	/* or NULL */
/* Convert a tensor (F32, F16, BF16 or a quantized type of quant.h) to f32,
 * bit for bit as llama.cpp dequantizes it. dst holds n_elements. -ENOTSUP
 * for other types. */
int gguf_tensor_to_f32(const gguf_tensor_t *t, float *dst);
/* The types a model can hold, for error messages. */
#define GGUF_LOADABLE_TYPES "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS"
/* Whether margin can load tensor t / every tensor of g: 0, or -ENOTSUP with
 * "tensor blk.0.attn_q.weight has type Q4_K; margin loads F32, F16, BF16, Q8_0". */
int gguf_tensor_check_loadable(const gguf_tensor_t *t, char *err, size_t errlen);
int gguf_check_loadable(const gguf_t *g, char *err, size_t errlen);
bool gguf_ttype_loadable(uint32_t type);
const char *gguf_ttype_name(uint32_t type);	/* "F32", "Q4_K", ... or "unknown" */
/* Block layout of a ggml type: elements per block and bytes per block;
 * 0 for unknown or removed types. */
uint32_t gguf_ttype_block_size(uint32_t type);
uint32_t gguf_ttype_type_size(uint32_t type);
/* Bytes of a tensor of n_elements (n_elements a multiple of the block
 * size), or 0 when unknown type, partial block or overflow. */
uint64_t gguf_ttype_nbytes(uint32_t type, uint64_t n_elements);
const char *gguf_vtype_name(enum gguf_vtype t);	/* "uint32", "string", ... or "unknown" */
size_t gguf_vtype_size(enum gguf_vtype t);	/* bytes of a numeric/bool value; 0 for string, array, unknown */

/* bfloat16 (half precision is lib/mg_f16.h). */
float gguf_bf16_to_f32(uint16_t h);
/* Round to nearest even; NaN stays NaN (quiet), overflow becomes inf. */
uint16_t gguf_f32_to_bf16(float f);

/* --- writer --- */
typedef struct gguf_writer gguf_writer_t;

gguf_writer_t *gguf_writer_new(void);
void gguf_writer_destroy(gguf_writer_t **w);
/* Values are copied. Keys must be non-empty, at most 65535 bytes, and not
 * already set (-EEXIST); general.alignment must be a u32 power of two. */
int gguf_writer_set_u32(gguf_writer_t *w, const char *key, uint32_t v);
int gguf_writer_set_i32(gguf_writer_t *w, const char *key, int32_t v);
int gguf_writer_set_u64(gguf_writer_t *w, const char *key, uint64_t v);
int gguf_writer_set_f32(gguf_writer_t *w, const char *key, float v);
int gguf_writer_set_bool(gguf_writer_t *w, const char *key, bool v);
int gguf_writer_set_str(gguf_writer_t *w, const char *key, const char *v);
/* Any numeric or bool scalar type t, *v packed little-endian (gguf_vtype_size(t) bytes). */
int gguf_writer_set_val(gguf_writer_t *w, const char *key, enum gguf_vtype t, const void *v);
/* Numeric array of n elements of type t (packed little-endian in data). */
int gguf_writer_set_arr(gguf_writer_t *w, const char *key, enum gguf_vtype t,
			const void *data, uint64_t n);
int gguf_writer_set_arr_str(gguf_writer_t *w, const char *key, const char *const *v, uint64_t n);
/* Tensor data is borrowed until gguf_writer_write() returns. ne[0] innermost.
 * nbytes must equal gguf_ttype_nbytes(type, product of ne); names are unique,
 * 1..64 bytes. -EINVAL / -EEXIST otherwise. */
int gguf_writer_add_tensor(gguf_writer_t *w, const char *name, uint32_t type,
			   uint32_t n_dims, const uint64_t *ne, const void *data, uint64_t nbytes);
/* A tensor whose data is produced while the file is written, so a writer
 * of a large model never holds it in memory: fill(fill_ctx, dst, offset,
 * len) writes bytes [offset, offset + len) of the tensor's data to dst
 * (calls come in order, len <= 64 KiB, pieces may split an element) and
 * returns 0 or a negative errno that fails gguf_writer_write. fill_ctx is
 * borrowed until gguf_writer_write returns. */
typedef int (*gguf_writer_fill_fn)(void *fill_ctx, void *dst, uint64_t offset, size_t len);
int gguf_writer_add_tensor_fill(gguf_writer_t *w, const char *name, uint32_t type,
				uint32_t n_dims, const uint64_t *ne, uint64_t nbytes,
				gguf_writer_fill_fn fill, void *fill_ctx);
/* Writes a GGUF v3 file: keys in insertion order, tensor data in insertion
 * order, each tensor aligned to general.alignment (32 unless set). Writes a
 * temporary file next to path, fsyncs it, then renames it over path, so a
 * reader never sees a half-written file. On failure (e.g. ENOSPC) returns
 * -errno, removes the temporary file and err names the path. May be called
 * more than once. */
int gguf_writer_write(gguf_writer_t *w, const char *path, char *err, size_t errlen);

#endif
