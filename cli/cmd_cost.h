/* cmd_cost: `marginctl cost`, and the helpers `marginctl economics`
 * shares with it (profiles and price tables by name, ledger rows from a
 * margind or its state directory, throughput measured from them).
 *
 * Hardware profiles and price tables given by name are looked up in
 * $MARGIN_HARDWARE_DIR / $MARGIN_PRICES_DIR, else the meter's default
 * directories (meter_default_dir: the installed
 * DATADIR/margin/{hardware,prices}, else this source tree's deploy/).
 * Single thread. */
#ifndef CMD_COST_H
#define CMD_COST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "meter/hwprof.h"
#include "meter/ledger.h"
#include "meter/pricetab.h"
#include "meter/thru.h"

/* The directories (borrowed: the environment's or a static buffer). */
const char *cmd_cost_hardware_dir(void);
const char *cmd_cost_prices_dir(void);

/* meter_load_profile in cmd_cost_hardware_dir(); a name not found says
 * where names are looked up. */
int cmd_cost_profile(const char *spec, hwprof_t *ret, char *err, size_t errlen);
/* meter_load_prices in cmd_cost_prices_dir(). */
int cmd_cost_prices(pricetab_t *t, const char *spec, char *err, size_t errlen);
/* A decimal amount of currency units as exact micros ("500000" -> 5e11). */
int cmd_cost_micros(const char *text, int64_t *ret);

/* A batch's ledger rows, with their booked closed-API equivalents. */
typedef struct cmd_cost_rows {
	ledger_row_t *v;		/* owned array; strings borrowed from json or db */
	size_t n;
	json_t *json;			/* owned: the HTTP reply the strings point into */
	ledger_rows_t *db;		/* owned: rows read from a state directory */
	ledger_api_t *api;		/* owned (from HTTP): the rows' equivalents */
	ledger_api_price_t *prices;	/* owned (from HTTP): what priced them; strings in json */
	size_t n_prices;
	char default_currency[4];	/* for rows booked without a profile */
} cmd_cost_rows_t;

/* From STATE_DIR/margin.db (read only; batch NULL = every row) when
 * state_dir is set, else GET /v1/cost/ledger?batch=ID from the margind at
 * --url (cli_globals). Rows without a currency get the server's (or, from
 * a state directory, default_currency). Each row's booked equivalents come
 * with it (ledger_row_t.api). -ENOENT: unknown batch; -EPROTO: a reply
 * whose equivalents name a pricing it does not list. */
int cmd_cost_fetch(const char *state_dir, const char *batch, const char *default_currency, cmd_cost_rows_t *ret,
		   char *err, size_t errlen);
void cmd_cost_rows_done(cmd_cost_rows_t *r);

/* The throughput the rows show: output tokens per second of engine time
 * at their call mix (per node at 100% utilization), the mix, and the
 * utilization busy / (busy + idle). time_scale scales the busy time (what-
 * if hardware that is faster). -EINVAL when there is no engine time. */
int cmd_cost_measured(const ledger_row_t *rows, size_t n, const char *what, double time_scale, thru_t *ret,
		      double *ret_in_per_call, double *ret_out_per_call, double *ret_utilization, char *err,
		      size_t errlen);

#endif
