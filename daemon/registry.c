/* registry: see registry.h. */
#include "registry.h"
#include "htab.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct registry {
	htab_t *by_ident;	/* owned table; values borrowed from the list */
	reg_worker_t *head, *tail;	/* owned list */
	size_t n;
};

registry_t *registry_new(void)
{
	registry_t *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->by_ident = htab_new();
	if (r->by_ident == NULL) {
		free(r);
		return NULL;
	}
	return r;
}

static void free_models(reg_worker_t *w)
{
	for (size_t i = 0; i < w->n_models; i++) {
		free(w->models[i].name);
		free(w->models[i].arch);
		free(w->models[i].kv_type);
		free(w->models[i].arith);
		free(w->models[i].pooling);
	}
	free(w->models);
	w->models = NULL;
	w->n_models = 0;
}

void registry_destroy(registry_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	registry_t *r = *p;
	reg_worker_t *w = r->head;
	while (w != NULL) {
		reg_worker_t *next = w->next;
		free_models(w);
		free(w);
		w = next;
	}
	htab_destroy(&r->by_ident);
	free(r);
	*p = NULL;
}

reg_worker_t *registry_add(registry_t *r, const uint8_t *ident, size_t len)
{
	if (len == 0 || len > REGISTRY_IDENT_MAX)
		return NULL;
	reg_worker_t *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	memcpy(w->ident, ident, len);
	w->ident_len = len;
	if (htab_put(r->by_ident, w->ident, len, w) < 0) {
		free(w);
		return NULL;
	}
	w->prev = r->tail;
	if (r->tail)
		r->tail->next = w;
	else
		r->head = w;
	r->tail = w;
	r->n++;
	return w;
}

reg_worker_t *registry_find(const registry_t *r, const uint8_t *ident, size_t len)
{
	return htab_find(r->by_ident, ident, len);
}

reg_worker_t *registry_find_instance(const registry_t *r, uint64_t instance_id)
{
	if (instance_id == 0)
		return NULL;
	for (reg_worker_t *w = r->head; w != NULL; w = w->next)
		if (w->instance_id == instance_id)
			return w;
	return NULL;
}

int registry_rebind(registry_t *r, reg_worker_t *w, const uint8_t *ident, size_t len)
{
	if (len == 0 || len > REGISTRY_IDENT_MAX)
		return -EINVAL;
	if (htab_put(r->by_ident, ident, len, w) < 0)
		return -ENOMEM;
	htab_remove(r->by_ident, w->ident, w->ident_len);
	memcpy(w->ident, ident, len);
	w->ident_len = len;
	return 0;
}

void registry_remove(registry_t *r, reg_worker_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	reg_worker_t *w = *p;
	htab_remove(r->by_ident, w->ident, w->ident_len);
	if (w->prev)
		w->prev->next = w->next;
	else
		r->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		r->tail = w->prev;
	r->n--;
	free_models(w);
	free(w);
	*p = NULL;
}

int registry_set_models(reg_worker_t *w, Margin__V1__ModelInfo *const *m, size_t n)
{
	reg_model_t *v = calloc(n ? n : 1, sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		v[i].name = strdup(m[i]->name ? m[i]->name : "");
		v[i].arch = strdup(m[i]->arch ? m[i]->arch : "");
		v[i].n_params = m[i]->n_params;
		v[i].n_ctx = m[i]->n_ctx;
		v[i].n_vocab = m[i]->n_vocab;
		v[i].kv_type = strdup(m[i]->kv_type ? m[i]->kv_type : "");
		v[i].arith = strdup(m[i]->arith ? m[i]->arith : "");
		v[i].kv_bytes = m[i]->kv_bytes;
		v[i].weight_bytes = m[i]->weight_bytes;
		v[i].embed_dims = m[i]->embed_dims;
		v[i].pooling = strdup(m[i]->pooling ? m[i]->pooling : "");
		v[i].embed_truncatable = m[i]->embed_truncatable;
		if (v[i].name == NULL || v[i].arch == NULL || v[i].kv_type == NULL || v[i].arith == NULL ||
		    v[i].pooling == NULL) {
			for (size_t k = 0; k <= i; k++) {
				free(v[k].name);
				free(v[k].arch);
				free(v[k].kv_type);
				free(v[k].arith);
				free(v[k].pooling);
			}
			free(v);
			return -ENOMEM;
		}
	}
	free_models(w);
	w->models = v;
	w->n_models = n;
	return 0;
}

const reg_model_t *registry_model(const reg_worker_t *w, const char *name)
{
	for (size_t i = 0; i < w->n_models; i++)
		if (strcmp(w->models[i].name, name) == 0)
			return &w->models[i];
	return NULL;
}

bool registry_serves(const reg_worker_t *w, const char *model)
{
	return registry_model(w, model) != NULL;
}

bool registry_embeds(const reg_worker_t *w, const char *model)
{
	const reg_model_t *m = registry_model(w, model);
	return m != NULL && m->embed_dims > 0;
}

reg_worker_t *registry_first(const registry_t *r)
{
	return r->head;
}

size_t registry_count(const registry_t *r)
{
	return r->n;
}

const char *registry_ident_str(const uint8_t *ident, size_t len, char *buf, size_t buflen)
{
	bool printable = len > 0;
	for (size_t i = 0; i < len; i++)
		if (ident[i] < 0x21 || ident[i] > 0x7e || ident[i] == '"' || ident[i] == '\\')
			printable = false;
	size_t n = 0;
	if (buflen == 0)
		return buf;
	if (printable) {
		n = len < buflen - 1 ? len : buflen - 1;
		memcpy(buf, ident, n);
	} else {
		static const char hex[] = "0123456789abcdef";
		if (buflen > 3) {
			buf[n++] = '0';
			buf[n++] = 'x';
		}
		for (size_t i = 0; i < len && n + 2 < buflen; i++) {
			buf[n++] = hex[ident[i] >> 4];
			buf[n++] = hex[ident[i] & 15];
		}
	}
	buf[n] = '\0';
	return buf;
}
