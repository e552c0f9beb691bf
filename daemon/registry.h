/* registry: the workers connected now, keyed by their ZeroMQ routing id.
 *
 * A worker is what one Hello registered: a connection (routing id), the
 * process behind it (instance_id), what it serves (models), its credit
 * (how many more shards it takes) and its liveness deadline. The shards a
 * worker holds hang off it in an intrusive list that sched owns. The
 * struct is public because sched reads and writes its fields; only
 * registry.c allocates and frees it. Core thread only. */
#ifndef REGISTRY_H
#define REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/mg_wire.h"

#define REGISTRY_IDENT_MAX 256

struct sched_shard;

/* A model a worker serves, as its Hello described it. */
typedef struct reg_model {
	char *name;			/* owned: what jobs route on (body.model) */
	char *arch;			/* owned */
	uint64_t n_params;
	uint32_t n_ctx;			/* tokens per engine slot: prompt + completion */
	uint32_t n_vocab;
	char *kv_type;			/* owned: "f16", ... or "" (not reported) */
	char *arith;			/* owned: "llama", "fast" or "" (not reported) */
	uint64_t kv_bytes;		/* the slots' KV caches, reserved */
	uint64_t weight_bytes;
	uint32_t embed_dims;		/* 0: this worker gives no embeddings with it */
	char *pooling;			/* owned: "mean", "cls", "last" or "" */
	bool embed_truncatable;
} reg_model_t;

typedef struct reg_worker {
	uint8_t ident[REGISTRY_IDENT_MAX];	/* ROUTER routing id of its connection */
	size_t ident_len;
	char id[24];			/* "w17": journal workers.id, sent in Welcome */
	int64_t db_id;
	char name[128];			/* Hello.worker_name */
	char hardware_profile[128];
	char build[64];
	char key[64];			/* CURVE key name (ZAP user id) or "" */
	reg_model_t *models;		/* owned: n_models */
	size_t n_models;
	uint32_t slots, threads;
	uint64_t instance_id;
	uint32_t credit;		/* shards it can take now */
	int64_t joined_ns, last_seen_ns;	/* monotonic */
	int64_t expiry_ns;		/* declared dead when now passes it */
	int64_t next_hb_ns;		/* next Heartbeat we send */
	int64_t blocked_until_ns;	/* its send queue was full: no Assign before then */
	struct sched_shard *shards;	/* borrowed: in-flight shards (sched owns them) */
	uint32_t n_shards;
	uint32_t n_isolated;		/* suspect shards it holds (then it holds nothing else) */
	uint64_t shards_done, requests_done;
	struct reg_worker *next, *prev;	/* registry order (join order) */
} reg_worker_t;

typedef struct registry registry_t;

registry_t *registry_new(void);
/* NULL-safe; frees every worker (not the shards). */
void registry_destroy(registry_t **r);

/* A new worker for ident (must not be registered). NULL on out of memory
 * or an identity over REGISTRY_IDENT_MAX. Owned by the registry. */
reg_worker_t *registry_add(registry_t *r, const uint8_t *ident, size_t len);
/* Borrowed or NULL. */
reg_worker_t *registry_find(const registry_t *r, const uint8_t *ident, size_t len);
/* The worker whose Hello carried instance_id (0 never matches). */
reg_worker_t *registry_find_instance(const registry_t *r, uint64_t instance_id);
/* Moves w to a new routing id (the same process on a new connection). */
int registry_rebind(registry_t *r, reg_worker_t *w, const uint8_t *ident, size_t len);
/* Unlinks and frees w. */
void registry_remove(registry_t *r, reg_worker_t **w);
/* Replaces w's model list with copies of Hello's. -ENOMEM. */
int registry_set_models(reg_worker_t *w, Margin__V1__ModelInfo *const *m, size_t n);
/* The model of w called name, or NULL (borrowed). */
const reg_model_t *registry_model(const reg_worker_t *w, const char *name);
bool registry_serves(const reg_worker_t *w, const char *model);
/* w serves model and embeds with it (ModelInfo.embed_dims > 0). */
bool registry_embeds(const reg_worker_t *w, const char *model);

reg_worker_t *registry_first(const registry_t *r);
size_t registry_count(const registry_t *r);

/* The routing id as text for logs: itself when printable, else hex. */
const char *registry_ident_str(const uint8_t *ident, size_t len, char *buf, size_t buflen);

#endif
