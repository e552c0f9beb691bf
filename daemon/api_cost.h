/* api_cost: the metering service's HTTP endpoints and gauges.
 *
 *   GET /v1/cost?batch=ID&group=call|batch|model|worker|day&format=json|csv|text
 *               [&currency=CUR][&refs=A,B][&model=M][&worker=W][&from=DAY][&to=DAY]
 *               [&prices=booked|current]
 *       a cost report (meter/report.h) over the ledger: with batch=ID its
 *       calls (group defaults to call), else every call (group defaults to
 *       batch; group=call needs a batch). DAY is YYYY-MM-DD (UTC, both
 *       ends included). Closed-API equivalents for [meter] refs (or refs=):
 *       the ones booked with the calls (prices=booked, the default; a call
 *       without one is priced with margind's tables and the report says
 *       so), or all recomputed with margind's [meter] price tables
 *       (prices=current: a what-if, labelled). The sale price is [meter]
 *       sale_price. 404 batch_not_found for a batch the journal does not
 *       know; an unfinished batch reports the calls answered so far.
 *   GET /v1/cost/ledger?batch=ID
 *       the batch's ledger rows with every column and their booked
 *       equivalents ("api_equivalents": ref_model, micros, currency,
 *       price_id), plus "api_prices": what priced them (ledger_api_price
 *       rows), for clients that report or price them again (marginctl cost
 *       --hardware/--prices: what-if).
 *   GET /v1/cost/chart?batch=ID[&hardware=PROFILE]
 *       image/svg+xml: cost per 1M tokens against utilization at the
 *       batch's measured throughput and call mix, on its hardware profile
 *       (or PROFILE from [meter] hardware_dir), with the reference models'
 *       prices as horizontal lines.
 *
 * How the reports read: each request opens its own read-only SQLite
 * connection to STATE_DIR/margin.db. The journal is in WAL mode, so a
 * reader sees the last committed state while the core thread keeps
 * writing; a report over a million rows then costs the HTTP thread, never
 * the core loop (the control channel would queue every Result behind it).
 * Rows are committed with their Result, so a report never shows half of
 * one.
 *
 * HTTP threads (any number at once); configuration is read only. */
#ifndef API_COST_H
#define API_COST_H

#include "booking.h"
#include "http_priv.h"
#include "metrics.h"

/* Before http_new(): conf borrowed (must outlive the HTTP threads). The
 * gauges count calls booked from now on (the ledger's highest id at this
 * point is remembered). -EIO when the journal cannot be read. */
int api_cost_start(const booking_conf_t *conf, const char *state_dir, char *err, size_t errlen);

void api_cost_report(http_req_t *r);
void api_cost_ledger(http_req_t *r);
void api_cost_chart(http_req_t *r);

/* At each /metrics scrape: reads the ledger rows booked since the last
 * scrape and sets margin_cost_per_token{model_name,basis,currency} and,
 * with a sale price, margin_gross_margin_ratio{model_name}; adds their
 * costs to margin_cost_micros_total{kind,currency} and their booked
 * equivalents to margin_api_equivalent_micros_total{reference,currency}
 * (each in the currency it was booked in). Thread-safe. Does nothing
 * before api_cost_start(). */
int api_cost_update_metrics(const char *state_dir, metrics_t *m);

#endif
