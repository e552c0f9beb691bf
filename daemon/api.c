/* api: see api.h. The route table and the endpoints' service hooks. */
#include "api.h"
#include "api_cost.h"

/* Files left half-written by a crash go before the finalizer starts over
 * the batches it owns. */
static int start(http_t *h, char *err, size_t errlen)
{
	api_files_sweep(h);
	return api_batches_new(h, &h->batches, err, errlen);
}

static void stop(http_t *h)
{
	api_batches_destroy(&h->batches);
}

static void scrape(http_t *h)
{
	api_cost_update_metrics(h->state_dir, h->metrics);
}

enum {
	STREAM = HTTP_ROUTE_STREAM,
	JSON = HTTP_ROUTE_JSON,
	WORK = HTTP_ROUTE_WORK,
};

static const http_route_t routes[] = {
	{ "POST", "/v1/files", STREAM | WORK, api_files_upload, api_files_upload_begin, api_files_upload_data },
	{ "GET", "/v1/files", 0, api_files_list, NULL, NULL },
	{ "GET", "/v1/files/{}", 0, api_files_get, NULL, NULL },
	{ "DELETE", "/v1/files/{}", 0, api_files_delete, NULL, NULL },
	{ "GET", "/v1/files/{}/content", 0, api_files_content, NULL, NULL },
	{ "POST", "/v1/batches", JSON | WORK, api_batches_create, NULL, NULL },
	{ "GET", "/v1/batches", 0, api_batches_list, NULL, NULL },
	{ "GET", "/v1/batches/{}", 0, api_batches_get, NULL, NULL },
	{ "POST", "/v1/batches/{}/cancel", 0, api_batches_cancel, NULL, NULL },
	{ "POST", "/v1/completions", JSON | WORK, api_completions_post, NULL, NULL },
	{ "POST", "/v1/chat/completions", JSON | WORK, api_completions_post, NULL, NULL },
	{ "POST", "/v1/embeddings", JSON | WORK, api_embeddings_post, NULL, NULL },
	{ "GET", "/v1/models", 0, api_models_list, NULL, NULL },
	{ "GET", "/v1/models/{}", 0, api_models_get, NULL, NULL },
	{ "GET", "/v1/cost", 0, api_cost_report, NULL, NULL },
	{ "GET", "/v1/cost/ledger", 0, api_cost_ledger, NULL, NULL },
	{ "GET", "/v1/cost/chart", 0, api_cost_chart, NULL, NULL },
};

const http_service_t api_service = {
	.routes = routes,
	.n_routes = sizeof(routes) / sizeof(routes[0]),
	.start = start,
	.stop = stop,
	.scrape = scrape,
};
