/* htab: see htab.h. Chaining with a power-of-two bucket array that doubles
 * when the load passes 1; keys hashed with mg_hash (SipHash under a
 * per-process random key), because some keys come from outside: an
 * unkeyed hash would let a batch file choose one bucket for all its ids. */
#include "htab.h"
#include "lib/mg_hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct node {
	struct node *next;	/* owned */
	uint64_t hash;
	void *val;		/* borrowed */
	size_t len;
	unsigned char key[];	/* copy of the key */
};

struct htab {
	struct node **b;	/* owned: nb bucket heads */
	size_t nb, n;
};

static uint64_t hash_bytes(const void *key, size_t len)
{
	return mg_hash(key, len);
}

htab_t *htab_new(void)
{
	htab_t *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->nb = 16;
	h->b = calloc(h->nb, sizeof(*h->b));
	if (h->b == NULL) {
		free(h);
		return NULL;
	}
	return h;
}

void htab_destroy(htab_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	htab_t *h = *p;
	for (size_t i = 0; i < h->nb; i++) {
		struct node *n = h->b[i];
		while (n != NULL) {
			struct node *next = n->next;
			free(n);
			n = next;
		}
	}
	free(h->b);
	free(h);
	*p = NULL;
}

static struct node **slot(const htab_t *h, const void *key, size_t len, uint64_t hash)
{
	struct node **pp = &h->b[hash & (h->nb - 1)];
	while (*pp != NULL && !((*pp)->hash == hash && (*pp)->len == len &&
				memcmp((*pp)->key, key, len) == 0))
		pp = &(*pp)->next;
	return pp;
}

static void grow(htab_t *h)
{
	size_t nb = h->nb * 2;
	struct node **b = calloc(nb, sizeof(*b));
	if (b == NULL)
		return;	/* keep the longer chains; still correct */
	for (size_t i = 0; i < h->nb; i++) {
		struct node *n = h->b[i];
		while (n != NULL) {
			struct node *next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
			n = next;
		}
	}
	free(h->b);
	h->b = b;
	h->nb = nb;
}

int htab_put(htab_t *h, const void *key, size_t len, void *val)
{
	uint64_t hash = hash_bytes(key, len);
	struct node **pp = slot(h, key, len, hash);
	if (*pp != NULL) {
		(*pp)->val = val;
		return 0;
	}
	struct node *n = malloc(sizeof(*n) + len);
	if (n == NULL)
		return -ENOMEM;
	n->next = NULL;
	n->hash = hash;
	n->val = val;
	n->len = len;
	memcpy(n->key, key, len);
	*pp = n;
	if (++h->n > h->nb)
		grow(h);
	return 0;
}

void *htab_find(const htab_t *h, const void *key, size_t len)
{
	struct node *n = *slot(h, key, len, hash_bytes(key, len));
	return n ? n->val : NULL;
}

void *htab_remove(htab_t *h, const void *key, size_t len)
{
	struct node **pp = slot(h, key, len, hash_bytes(key, len));
	struct node *n = *pp;
	if (n == NULL)
		return NULL;
	void *val = n->val;
	*pp = n->next;
	free(n);
	h->n--;
	return val;
}

size_t htab_count(const htab_t *h)
{
	return h->n;
}

int htab_foreach(const htab_t *h, int (*fn)(void *user, const void *key, size_t len, void *val),
		 void *user)
{
	for (size_t i = 0; i < h->nb; i++)
		for (struct node *n = h->b[i]; n != NULL; n = n->next) {
			int r = fn(user, n->key, n->len, n->val);
			if (r != 0)
				return r;
		}
	return 0;
}

size_t htab_longest_chain(const htab_t *h)
{
	size_t most = 0;
	for (size_t i = 0; i < h->nb; i++) {
		size_t n = 0;
		for (const struct node *p = h->b[i]; p != NULL; p = p->next)
			n++;
		if (n > most)
			most = n;
	}
	return most;
}
