/* booking: [meter] settings, margind's meter flags, and the pricing of
 * Results — conservation per accounting window against an independent
 * 128-bit oracle (several workers, random busy times, failed outputs, a
 * batch after an idle hour, workers that leave, a restart), rollback,
 * profile fallbacks, and the hooks wired through the journal and sched. */
#include "booking.h"
#include "meter/cost.h"
#include "cu_alloc.h"
#include "cu_sql.h"
#include "fixture.h"
#include "meter/ledger.h"
#include "meter/report.h"
#include "meter/meter.h"
#include "meter/meter_catalog.h"
#include "opts.h"
#include "tests.h"
#include "lib/mg_int128.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Busy and idle rates differ (power at load and at idle), so a mix-up of
 * the two shows. */
static const char test_hw[] =
	"[hardware]\nname = test-hw\ncurrency = CNY\n"
	"purchase_price = 0\npurchase_price_source = test\npurchase_price_date = 2026\n"
	"power_watts_load = 1000\npower_watts_load_source = test\npower_watts_load_date = 2026\n"
	"power_watts_idle = 250\npower_watts_idle_source = test\npower_watts_idle_date = 2026\n"
	"pue = 1.5\npue_source = test\npue_date = 2026\n"
	"electricity_per_kwh = 0.7\nelectricity_per_kwh_source = test\nelectricity_per_kwh_date = 2026\n"
	"fixed_per_hour = 0.33\nfixed_per_hour_source = test\nfixed_per_hour_date = 2026\n";
static const char test_cpu[] =
	"[hardware]\nname = cpu-2vcpu\ncurrency = USD\npricing = rental\n"
	"purchase_price = 0\npurchase_price_source = test\npurchase_price_date = 2026\n"
	"power_watts_load = 0\npower_watts_load_source = test\npower_watts_load_date = 2026\n"
	"fixed_per_hour = 0.123457\nfixed_per_hour_source = test\nfixed_per_hour_date = 2026\n";
static const char test_prices[] =
	"[table]\nname = t\n[fx]\nCNY_per_USD = 7.2\nCNY_per_USD_source = test\nCNY_per_USD_date = 2026\n"
	"[price.ref-a]\nmodel = Ref A\nprovider = test\ncurrency = USD\ninput_per_1m = 0.15\n"
	"output_per_1m = 0.6\nsource = test\ndate = 2026\n"
	"[price.ref-b]\nmodel = Ref B\nprovider = test\ncurrency = CNY\ninput_per_1m = 0.5\n"
	"output_per_1m = 2\nsource = test\ndate = 2026\n"
	"[price.emb-a]\nmodel = Emb A\ncurrency = USD\nmode = embedding\ninput_per_1m = 0.02\n"
	"batch_input_per_1m = 0.01\nsource = test\ndate = 2026\n"
	"[price.emb-b]\nmodel = Emb B\ncurrency = CNY\nmode = embedding\ninput_per_1m = 0.5\n"
	"batch_input_per_1m = 0.25\nsource = test\ndate = 2026\n";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
}

/* A directory with hw/{test-hw,cpu-2vcpu}.conf and prices/t.conf. */
static const char *data_dir(bool with_fallback)
{
	static char dir[512];
	char p[600];
	fx_newdir(dir, sizeof(dir));
	snprintf(p, sizeof(p), "%s/hw", dir);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/prices", dir);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/hw/test-hw.conf", dir);
	write_file(p, test_hw);
	if (with_fallback) {
		snprintf(p, sizeof(p), "%s/hw/cpu-2vcpu.conf", dir);
		write_file(p, test_cpu);
	}
	snprintf(p, sizeof(p), "%s/prices/t.conf", dir);
	write_file(p, test_prices);
	return dir;
}

/* [meter] settings for the data dir; extra: "key=value" pairs. */
static int load_conf(booking_conf_t *c, const char *dir, const char *const *extra, char *err, size_t errlen)
{
	mg_config_t *cfg = mg_config_new();
	char p[600];
	snprintf(p, sizeof(p), "%s/hw", dir);
	mg_config_set(cfg, "meter", "hardware_dir", p);
	snprintf(p, sizeof(p), "%s/prices", dir);
	mg_config_set(cfg, "meter", "prices_dir", p);
	mg_config_set(cfg, "meter", "prices", "t");
	for (int i = 0; extra && extra[i]; i++) {
		char k[64];
		const char *eq = strchr(extra[i], '=');
		snprintf(k, sizeof(k), "%.*s", (int)(eq - extra[i]), extra[i]);
		mg_config_set(cfg, "meter", k, eq + 1);
	}
	int r = booking_conf_load(c, cfg, err, errlen);
	mg_config_destroy(&cfg);
	return r;
}

/* The oracle: rate (micros/h) x ns / 3.6e12, rounded half up (rates are
 * never negative), in 128 bits. */
static int64_t oracle_cost(int64_t rate, uint64_t ns)
{
	mg_u128 d = 3600000000000ULL;
	return (int64_t)(((mg_u128)rate * ns + d / 2) / d);
}

/* --- a ledger of our own ------------------------------------------------ */

/* The wall clock of Results booked on a bare ledger (no journal). */
static int64_t wall_now;

static sqlite3 *ledger_db(void)
{
	sqlite3 *db = NULL;
	char err[256];
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(":memory:", &db), SQLITE_OK);
	CU_ASSERT_EQUAL_FATAL(ledger_create(db, err, sizeof(err)), 0);
	return db;
}

/* Books n calls of `job` on worker wK (announcing `hw`) with busy times
 * busy[]; failed: engine time of outputs without a row. */
static int book(booking_t *b, sqlite3 *db, const char *job, int worker, const char *hw, const uint64_t *busy,
		size_t n, uint64_t failed, journal_usage_t *sum)
{
	journal_job_t jb;
	memset(&jb, 0, sizeof(jb));
	snprintf(jb.name, sizeof(jb.name), "%s", job);
	snprintf(jb.model, sizeof(jb.model), "m");
	journal_shard_t sh = { .id = 1 };
	char wid[8], cids[64][16];
	snprintf(wid, sizeof(wid), "w%d", worker);
	journal_result_ctx_t ctx = { &jb, &sh, wid, wid, hw };
	journal_call_t calls[64];
	static int line;
	for (size_t i = 0; i < n; i++) {
		snprintf(cids[i], sizeof(cids[i]), "c%d", ++line);
		calls[i] = (journal_call_t){ .job = job, .custom_id = cids[i], .line_no = line, .model = "m",
					     .worker = wid, .worker_name = wid, .hardware_profile = hw, .shard_id = 1,
					     .prompt_tokens = 7, .completion_tokens = 3, .busy_ns = busy[i], .flops = 1,
					     .answered_at_ns = 1 };
	}
	journal_usage_t none;
	memset(&none, 0, sizeof(none));
	char err[512];
	int r = booking_book(b, db, &ctx, calls, n, failed, wall_now, sum ? sum : &none, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "booking_book: %s\n", err);
	return r;
}

typedef struct sums {
	int64_t n, busy, idle, marg, load, rate_busy, rate_idle;
	bool loaded_ge_marginal;
} sums_t;

static void sums_of(sqlite3 *db, const char *where, sums_t *s)
{
	char sql[512];
	sqlite3_stmt *q = NULL;
	snprintf(sql, sizeof(sql), "SELECT count(*), coalesce(sum(busy_ns),0), coalesce(sum(idle_ns),0),"
		 " coalesce(sum(cost_marginal_micros),0), coalesce(sum(cost_loaded_micros),0),"
		 " coalesce(min(rate_busy_micros_per_hour),0), coalesce(min(rate_idle_micros_per_hour),0),"
		 " coalesce(min(cost_loaded_micros >= cost_marginal_micros),1) FROM ledger WHERE %s", where);
	CU_ASSERT_EQUAL_FATAL(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL_FATAL(sqlite3_step(q), SQLITE_ROW);
	s->n = sqlite3_column_int64(q, 0);
	s->busy = sqlite3_column_int64(q, 1);
	s->idle = sqlite3_column_int64(q, 2);
	s->marg = sqlite3_column_int64(q, 3);
	s->load = sqlite3_column_int64(q, 4);
	s->rate_busy = sqlite3_column_int64(q, 5);
	s->rate_idle = sqlite3_column_int64(q, 6);
	s->loaded_ge_marginal = sqlite3_column_int(q, 7) != 0;
	sqlite3_finalize(q);
}

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* --- tests ------------------------------------------------------------- */

/* --- accounting windows -------------------------------------------------- */

/* A Result rolled back leaves no trace: booking it again, and the next
 * one, gives what a ledger that never saw the rollback gives, windows
 * included (they live in the journal's tables, in the Result's
 * transaction). */
static void test_rollback(void)
{
	char err[1024];
	booking_conf_t c;
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, data_dir(true), NULL, err, sizeof(err)), 0);
	booking_t *b = NULL, *b2 = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b2), 0);
	sqlite3 *db = ledger_db(), *ref = ledger_db();
	uint64_t a[3] = { 1234567, 7654321, 1 }, bb[2] = { 99999999, 3 };
	wall_now = 2000000000;
	CU_ASSERT_EQUAL(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(book(b, db, "j", 0, "test-hw", a, 3, 5, NULL), 0);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	for (int k = 0; k < 2; k++) {
		booking_t *x = k ? b2 : b;
		sqlite3 *d = k ? ref : db;
		wall_now = 3000000000;
		CU_ASSERT_EQUAL(book(x, d, "j", 0, "test-hw", a, 3, 0, NULL), 0);
		wall_now = 4000000000;
		CU_ASSERT_EQUAL(book(x, d, "j", 0, "test-hw", bb, 2, 0, NULL), 0);
		int64_t next;
		/* No journal: a window closes on the engine time alone. */
		CU_ASSERT_EQUAL(booking_tick(x, d, 2 * LEDGER_HOUR_NS, &next, err, sizeof(err)), 1);
	}
	sums_t s1, s2;
	sums_of(db, "1", &s1);
	sums_of(ref, "1", &s2);
	CU_ASSERT_EQUAL(s1.n, 5);
	CU_ASSERT_EQUAL(s1.n, s2.n);
	CU_ASSERT_EQUAL(s1.marg, s2.marg);
	CU_ASSERT_EQUAL(s1.load, s2.load);
	CU_ASSERT_EQUAL(s1.load, s1.marg);	/* no idle time known */
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT engine_ns FROM ledger_period"), (int64_t)(a[0] + a[1] + a[2] + bb[0] + bb[1]));
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT calls FROM ledger_period"), 5);
	sqlite3_close(db);
	sqlite3_close(ref);
	booking_destroy(&b);
	booking_destroy(&b2);
	booking_conf_done(&c);
}

/* Answers an Assign with busy[i] engine time per output; failed[i]: the
 * output is an error (engine time spent, no ledger row). */
static void result_busy(fx_t *f, const char *ident, const Margin__V1__Assign *a, const uint64_t *busy,
			const bool *failed)
{
	size_t n = a->n_requests;
	Margin__V1__Output *outs = calloc(n, sizeof(*outs)), **ptrs = calloc(n, sizeof(*ptrs));
	Margin__V1__Usage *us = calloc(n, sizeof(*us));
	Margin__V1__Error e = MARGIN__V1__ERROR__INIT;
	e.code = "worker_error";
	e.message = "test";
	CU_ASSERT_PTR_NOT_NULL_FATAL(outs);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ptrs);
	CU_ASSERT_PTR_NOT_NULL_FATAL(us);
	for (size_t i = 0; i < n; i++) {
		margin__v1__output__init(&outs[i]);
		margin__v1__usage__init(&us[i]);
		outs[i].line_no = a->requests[i]->line_no;
		outs[i].custom_id = a->requests[i]->custom_id;
		if (failed != NULL && failed[i]) {
			outs[i].error = &e;
		} else {
			outs[i].text = "ok";
			outs[i].finish_reason = "stop";
			outs[i].prompt_tokens = 3;
			outs[i].completion_tokens = 5;
		}
		us[i].busy_ns = busy[i];
		outs[i].usage = &us[i];
		ptrs[i] = &outs[i];
	}
	Margin__V1__Result r = MARGIN__V1__RESULT__INIT;
	r.batch_id = a->batch_id;
	r.shard_id = a->shard_id;
	r.attempt = a->attempt;
	r.n_outputs = n;
	r.outputs = ptrs;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_RESULT;
	m.result = &r;
	uint8_t *buf;
	size_t len;
	CU_ASSERT_EQUAL_FATAL(mg_wire_pack(&m, MG_WIRE_MAX_FRAME, &buf, &len), 0);
	fx_frame(f, ident, buf, len);
	free(buf);
	free(outs);
	free(ptrs);
	free(us);
}

/* A batch of n requests of model on worker ident, answered now with those
 * engine times. */
static void run_batch(fx_t *f, const char *name, const char *model, const char *ident, int n, const uint64_t *busy,
		      const bool *failed)
{
	char job[80], who[64];
	fx_submit(f, name, fx_lines(n, model, "r", 8), job);
	fx_credit(f, ident, 1);
	sched_dispatch(f->s, f->now);
	const mg_msg_t *a = fx_next(f, MARGIN__V1__MSG__BODY_ASSIGN, who);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_STRING_EQUAL(who, ident);
	CU_ASSERT_EQUAL_FATAL(a->assign->n_requests, (size_t)n);
	result_busy(f, ident, a->assign, busy, failed);
	journal_job_t jj;
	fx_job(f, name, &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "completed");
}

static sqlite3 *open_journal_db(const fx_t *f)
{
	char path[700];
	sqlite3 *db = NULL;
	snprintf(path, sizeof(path), "%s/margin.db", f->dir);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	return db;
}

static int64_t job_sql(sqlite3 *db, const char *what, const char *job)
{
	char q[256];
	snprintf(q, sizeof(q), "SELECT coalesce(%s, 0) FROM ledger WHERE job = '%s'", what, job);
	return cu_sql_int(db, q);
}

/* The reported case: a worker joins at 10:00 and sits idle; a 40-request
 * batch arrives at 11:10 and the same batch again at 11:19. Both belong to
 * the 11:00 window and share its idle time by busy time: they cost the
 * same (to a micro a call, the largest-remainder split), the 10:00 hour's
 * idle cost is not in either (its window keeps it, with no calls), and the
 * two batches' loaded costs sum to the node cost of 11:00-12:00 exactly.
 * (Charging all idle time to the next Result gave the first batch 70
 * minutes of idle and the second 9.) */
static void test_idle_hour(void)
{
	char err[1024];
	booking_conf_t c;
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, data_dir(true), NULL, err, sizeof(err)), 0);
	sched_params_t sp;
	sched_params_default(&sp);
	sp.shard_max_requests = 40;
	fx_t f;
	fx_open(&f, &sp);
	booking_t *b = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	CU_ASSERT_EQUAL_FATAL(booking_attach(b, f.s, f.dir, err, sizeof(err)), 0);
	const int64_t h10 = 490000 * LEDGER_HOUR_NS, min = 60 * MG_NS_PER_S;	/* 10:00 UTC of a day in 2025 */
	f.now = h10;
	fx_hello(&f, "w1", "m", 1);
	uint64_t busy[40];
	for (int i = 0; i < 40; i++)
		busy[i] = 150 * MG_NS_PER_MS;	/* 6 s of engine time a batch */
	f.now = h10 + 70 * min;
	run_batch(&f, "first", "m", "w1", 40, busy, NULL);
	f.now = h10 + 79 * min;
	run_batch(&f, "second", "m", "w1", 40, busy, NULL);
	int64_t next;
	f.now = h10 + 2 * LEDGER_HOUR_NS + 1;
	/* 10:00 closed at the first Result (it had ended); now 11:00. */
	CU_ASSERT_EQUAL(journal_tick(f.j, &next, err, sizeof(err)), 1);

	hwprof_t hw;
	CU_ASSERT_EQUAL_FATAL(meter_load_profile("test-hw", c.hardware_dir, &hw, err, sizeof(err)), 0);
	int64_t rb = hw.rate_busy_micros_per_hour, ri = hw.rate_idle_micros_per_hour;
	sqlite3 *db = open_journal_db(&f);
	int64_t first = job_sql(db, "sum(cost_loaded_micros)", "first");
	int64_t second = job_sql(db, "sum(cost_loaded_micros)", "second");
	int64_t engine = 80 * 150 * MG_NS_PER_MS;
	int64_t idle_hour = oracle_cost(ri, (uint64_t)LEDGER_HOUR_NS);
	int64_t node_11 = (int64_t)(((mg_u128)rb * (uint64_t)engine +
				     (mg_u128)ri * (uint64_t)(LEDGER_HOUR_NS - engine) + 1800000000000ULL) /
				    3600000000000ULL);
	fprintf(stderr, "\n    first %lld, second %lld micros; the 10:00 hour's idle %lld, 11:00's node cost %lld\n",
		(long long)first, (long long)second, (long long)idle_hour, (long long)node_11);
	CU_ASSERT(llabs(first - second) <= 40);
	CU_ASSERT(first < idle_hour);
	CU_ASSERT_EQUAL(first + second, node_11);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT node_cost_micros FROM ledger_period WHERE calls = 0 AND closed = 1"
				   " AND attended_ns = 3600000000000"), idle_hour);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_period"), 2);
	/* The jobs' totals follow their calls. */
	journal_job_t jj;
	fx_job(&f, "first", &jj);
	CU_ASSERT_EQUAL(jj.usage.cost_loaded_micros, first);
	fx_job(&f, "second", &jj);
	CU_ASSERT_EQUAL(jj.usage.cost_loaded_micros, second);
	sqlite3_close(db);
	fx_close(&f);
	booking_destroy(&b);
	booking_conf_done(&c);
}


/* [meter] period = day: a worker attached from 03:00, batches at 05:00 and
 * 20:00 share the day's idle time; the window stays open (loaded =
 * marginal) until midnight UTC, then the two sum to the node cost of the
 * day's 21 attended hours. */
static void test_day(void)
{
	char err[1024];
	booking_conf_t c;
	const char *day[] = { "period=day", NULL };
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, data_dir(true), day, err, sizeof(err)), 0);
	hwprof_t hw;
	CU_ASSERT_EQUAL_FATAL(meter_load_profile("test-hw", c.hardware_dir, &hw, err, sizeof(err)), 0);
	fx_t f;
	fx_open(&f, NULL);
	booking_t *b = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	CU_ASSERT_EQUAL_FATAL(booking_attach(b, f.s, f.dir, err, sizeof(err)), 0);
	const int64_t d0 = 20000 * LEDGER_DAY_NS;
	f.now = d0 + 3 * LEDGER_HOUR_NS;
	fx_hello(&f, "w1", "m", 1);
	uint64_t busy[4] = { 40 * MG_NS_PER_S, 1, 0, 20 * MG_NS_PER_S };
	f.now = d0 + 5 * LEDGER_HOUR_NS;
	run_batch(&f, "morning", "m", "w1", 4, busy, NULL);
	f.now = d0 + 20 * LEDGER_HOUR_NS;
	run_batch(&f, "evening", "m", "w1", 4, busy, NULL);
	int64_t next;
	f.now = d0 + 23 * LEDGER_HOUR_NS;
	CU_ASSERT_EQUAL(journal_tick(f.j, &next, err, sizeof(err)), 0);
	sqlite3 *db = open_journal_db(&f);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger WHERE period_open = 1 AND period_ns = 86400000000000"
				   " AND cost_loaded_micros = cost_marginal_micros"), 8);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(DISTINCT period_start_ns) FROM ledger"), 1);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT min(period_start_ns) FROM ledger"), d0);
	f.now = d0 + LEDGER_DAY_NS;
	CU_ASSERT_EQUAL(journal_tick(f.j, &next, err, sizeof(err)), 1);
	uint64_t engine = 2 * (busy[0] + busy[1] + busy[2] + busy[3]), att = 21 * LEDGER_HOUR_NS;
	int64_t node = (int64_t)(((mg_u128)hw.rate_busy_micros_per_hour * engine +
				  (mg_u128)hw.rate_idle_micros_per_hour * (att - engine) + 1800000000000ULL) /
				 3600000000000ULL);
	int64_t morning = job_sql(db, "sum(cost_loaded_micros)", "morning");
	int64_t evening = job_sql(db, "sum(cost_loaded_micros)", "evening");
	CU_ASSERT_EQUAL(morning + evening, node);
	CU_ASSERT(llabs(morning - evening) <= 4);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT attended_ns FROM ledger_period"), (int64_t)att);
	sqlite3_close(db);
	fx_close(&f);
	booking_destroy(&b);
	booking_conf_done(&c);
}

#define N_WORKERS 3

/* What the test knows of a worker-window, independently of the meter. */
typedef struct win {
	int64_t start;
	uint64_t engine;
	int64_t attended;
} win_t;

/* test_windows' oracle, from what the test sent and knows: the worker-
 * windows (attended from joined/left, engine time from wins) against the
 * ledger margind wrote. */
static void check_windows(fx_t *f, const hwprof_t *hw, int64_t t0, const int64_t *joined,
			  const int64_t *left, win_t (*wins)[40])
{
	sqlite3 *db = open_journal_db(f);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger WHERE period_open != 0 OR period_ns = 0"), 0);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger WHERE cost_loaded_micros < cost_marginal_micros"), 0);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_period WHERE closed = 0"), 0);
	int64_t base = ledger_window_start(t0, LEDGER_HOUR_NS);
	const char *wid[N_WORKERS + 1] = { "w1", "w2", "w3", "w4" };
	int n_windows = 0, n_unabsorbed = 0;
	for (int w = 0; w <= N_WORKERS; w++) {
		int64_t attended_sum = 0;
		for (int k = 0; k < 40; k++) {
			int64_t s = base + k * LEDGER_HOUR_NS, e = s + LEDGER_HOUR_NS;
			int64_t a = joined[w] > s ? joined[w] : s, z = left[w] < e ? left[w] : e;
			int64_t att = z > a ? z - a : 0;
			char q[400];
			snprintf(q, sizeof(q), "SELECT count(*) FROM ledger_period WHERE worker = '%s' AND period_start_ns = %lld",
				 wid[w], (long long)s);
			if (att == 0) {
				if (cu_sql_int(db, q) != 0)
					fprintf(stderr, "worker %s window %d: a row, attended 0 (joined %lld left %lld)\n",
						wid[w], k, (long long)(joined[w] - base), (long long)(left[w] - base));
				CU_ASSERT_EQUAL(cu_sql_int(db, q), 0);
				continue;
			}
			CU_ASSERT_EQUAL_FATAL(cu_sql_int(db, q), 1);
			n_windows++;
			attended_sum += att;
			uint64_t eng = wins[w][k].engine, idle = (uint64_t)att > eng ? (uint64_t)att - eng : 0;
			int64_t node = (int64_t)(((mg_u128)hw->rate_busy_micros_per_hour * eng +
						  (mg_u128)hw->rate_idle_micros_per_hour * idle + 1800000000000ULL) /
						 3600000000000ULL);
			snprintf(q, sizeof(q), "SELECT node_cost_micros FROM ledger_period WHERE worker = '%s' AND"
				 " period_start_ns = %lld AND attended_ns = %lld AND engine_ns = %llu", wid[w], (long long)s,
				 (long long)att, (unsigned long long)eng);
			CU_ASSERT_EQUAL(cu_sql_int(db, q), node);
			snprintf(q, sizeof(q), "SELECT count(*), coalesce(sum(cost_loaded_micros), -1) FROM ledger WHERE"
				 " worker = '%s' AND period_start_ns = %lld", wid[w], (long long)s);
			int64_t calls = cu_sql_int(db, q);
			snprintf(q, sizeof(q), "SELECT coalesce(sum(cost_loaded_micros), -1) FROM ledger WHERE"
				 " worker = '%s' AND period_start_ns = %lld", wid[w], (long long)s);
			if (calls > 0) {
				CU_ASSERT_EQUAL(cu_sql_int(db, q), node);
			} else {
				n_unabsorbed++;
			}
		}
		CU_ASSERT_EQUAL(attended_sum, left[w] - joined[w]);
	}
	CU_ASSERT(n_windows > 20);
	CU_ASSERT(n_unabsorbed > 0);
	/* The window with only failed outputs: node time, no calls. */
	CU_ASSERT(cu_sql_int(db, "SELECT count(*) FROM ledger_period WHERE calls = 0 AND engine_ns > 0") >= 1);
	/* Every job's totals are its calls'. */
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM jobs j WHERE u_cost_loaded_micros != (SELECT"
				   " coalesce(sum(cost_loaded_micros), 0) FROM ledger l WHERE l.job = j.name) OR"
				   " u_cost_marginal_micros != (SELECT coalesce(sum(cost_marginal_micros), 0) FROM ledger l"
				   " WHERE l.job = j.name)"), 0);
	sqlite3_close(db);
}

/* Three workers over about a day of hours: batches at random times with
 * random busy times (zeros, tiny, minutes), failed outputs, a window with
 * only failed outputs, a worker that leaves mid-hour (Bye) and one that
 * joins after a restart of margind. Once every window has closed, for
 * each (worker, window): the loaded costs of its calls sum to the node cost
 * of the window exactly, computed here from the engine time the test
 * sent and the attended time the test knows; loaded >= marginal; no call
 * stays provisional; every attached nanosecond is in exactly one window;
 * the jobs' totals equal their calls'. */
static void test_windows(void)
{
	char err[1024];
	booking_conf_t c;
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, data_dir(true), NULL, err, sizeof(err)), 0);
	hwprof_t hw;
	CU_ASSERT_EQUAL_FATAL(meter_load_profile("test-hw", c.hardware_dir, &hw, err, sizeof(err)), 0);
	fx_t f;
	fx_open(&f, NULL);
	booking_t *b = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	CU_ASSERT_EQUAL_FATAL(booking_attach(b, f.s, f.dir, err, sizeof(err)), 0);
	const int64_t t0 = 480000 * LEDGER_HOUR_NS + 17 * 60 * MG_NS_PER_S, min = 60 * MG_NS_PER_S;
	const char *ids[N_WORKERS] = { "w1", "w2", "w3" }, *models[N_WORKERS] = { "m1", "m2", "m3" };
	int64_t joined[N_WORKERS + 1], left[N_WORKERS + 1];
	win_t wins[N_WORKERS + 1][40];
	memset(wins, 0, sizeof(wins));
	f.now = t0;
	for (int w = 0; w < N_WORKERS; w++) {
		fx_hello(&f, ids[w], models[w], (uint64_t)w + 1);
		joined[w] = f.now;
		left[w] = 0;
		f.now += 7 * MG_NS_PER_S;
	}
	uint64_t x = 0x2545F4914F6CDD1DULL;
	int batches = 0;
	bool only_failed_done = false;
	for (int step = 0; step < 120; step++) {
		f.now += (int64_t)(rnd(&x) % (20 * (uint64_t)min));
		int w = (int)(rnd(&x) % N_WORKERS);
		if (w == 2 && left[2] != 0)
			continue;
		if (w == 2 && f.now - t0 > 10 * LEDGER_HOUR_NS) {
			/* w3 says Bye mid-hour: its last window ends there. */
			fx_bye(&f, ids[2]);
			left[2] = f.now;
			continue;
		}
		int n = 1 + (int)(rnd(&x) % 12);
		uint64_t busy[12];
		bool failed[12];
		bool all_failed = !only_failed_done && w == 1 && f.now - t0 > 5 * LEDGER_HOUR_NS;
		for (int i = 0; i < n; i++) {
			uint64_t kind = rnd(&x) % 6;
			busy[i] = kind == 0 ? 0 : kind == 1 ? rnd(&x) % 1000 : rnd(&x) % (3 * (uint64_t)min);
			failed[i] = all_failed || rnd(&x) % 5 == 0;
		}
		if (all_failed) {
			/* The only Result of its window: failed outputs alone. */
			f.now = ledger_window_start(f.now, LEDGER_HOUR_NS) + LEDGER_HOUR_NS + 5 * min;
			only_failed_done = true;
		}
		char name[32];
		snprintf(name, sizeof(name), "b%d", batches++);
		run_batch(&f, name, models[w], ids[w], n, busy, failed);
		int k = (int)((ledger_window_start(f.now, LEDGER_HOUR_NS) - ledger_window_start(t0, LEDGER_HOUR_NS)) /
			      LEDGER_HOUR_NS);
		CU_ASSERT_FATAL(k < 40);
		for (int i = 0; i < n; i++)
			wins[w][k].engine += busy[i];
		if (all_failed) {
			/* Nothing else in that window on w2. */
			f.now = ledger_window_start(f.now, LEDGER_HOUR_NS) + LEDGER_HOUR_NS + min;
		}
		if (step % 17 == 0) {
			int64_t next;
			CU_ASSERT(journal_tick(f.j, &next, err, sizeof(err)) >= 0);	/* margind's timer */
		}
	}
	CU_ASSERT(only_failed_done);
	CU_ASSERT(left[2] != 0);
	/* margind restarts: every worker is gone; a new one joins and works. */
	fx_reopen(&f);
	booking_destroy(&b);
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	CU_ASSERT_EQUAL_FATAL(booking_attach(b, f.s, f.dir, err, sizeof(err)), 0);
	int64_t next;
	CU_ASSERT(journal_tick(f.j, &next, err, sizeof(err)) >= 1);	/* core_run's first tick */
	for (int w = 0; w < N_WORKERS; w++)
		if (left[w] == 0)
			left[w] = f.now;
	f.now += 3 * min;
	fx_hello(&f, "w4", "m1", 99);
	joined[3] = f.now;
	uint64_t busy4[3] = { 5 * MG_NS_PER_S, 0, 1 };
	f.now += 2 * min;
	run_batch(&f, "after", "m1", "w4", 3, busy4, NULL);
	int k4 = (int)((ledger_window_start(f.now, LEDGER_HOUR_NS) - ledger_window_start(t0, LEDGER_HOUR_NS)) /
		       LEDGER_HOUR_NS);
	CU_ASSERT_FATAL(k4 < 40);
	wins[3][k4].engine += busy4[0] + busy4[1] + busy4[2];
	f.now += min;
	fx_bye(&f, "w4");
	left[3] = f.now;
	f.now = ledger_window_start(f.now, LEDGER_HOUR_NS) + LEDGER_HOUR_NS;
	CU_ASSERT(journal_tick(f.j, &next, err, sizeof(err)) >= 0);

	check_windows(&f, &hw, t0, joined, left, wins);
	fx_close(&f);
	booking_destroy(&b);
	booking_conf_done(&c);
}
static void profile_of_row(sqlite3 *db, int64_t id, char *hw, size_t hwlen, char *cur, size_t curlen,
			   int64_t *rate)
{
	sqlite3_stmt *q = NULL;
	CU_ASSERT_EQUAL_FATAL(sqlite3_prepare_v2(db, "SELECT hardware_profile, currency, rate_busy_micros_per_hour"
						 " FROM ledger WHERE id = ?1", -1, &q, NULL), SQLITE_OK);
	sqlite3_bind_int64(q, 1, id);
	CU_ASSERT_EQUAL_FATAL(sqlite3_step(q), SQLITE_ROW);
	snprintf(hw, hwlen, "%s", (const char *)sqlite3_column_text(q, 0));
	snprintf(cur, curlen, "%s", (const char *)sqlite3_column_text(q, 1));
	*rate = sqlite3_column_int64(q, 2);
	sqlite3_finalize(q);
}

/* Which profile prices a worker: the announced one; else cpu-2vcpu (also
 * for a name that tries to be a path); --hardware overrides all; with no
 * profile at all the call is still booked, at cost 0 without currency. */
static void test_profiles(void)
{
	char err[1024], hw[64], cur[8];
	int64_t rate;
	uint64_t busy = 3600000000000ULL;	/* one hour: the cost is the rate */
	booking_conf_t c;
	const char *dir = data_dir(true);
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, dir, NULL, err, sizeof(err)), 0);
	CU_ASSERT(c.has_fallback);
	CU_ASSERT_FALSE(c.has_forced);
	booking_t *b = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	sqlite3 *db = ledger_db();
	CU_ASSERT_EQUAL(book(b, db, "j", 0, "test-hw", &busy, 1, 0, NULL), 0);
	profile_of_row(db, 1, hw, sizeof(hw), cur, sizeof(cur), &rate);
	CU_ASSERT_STRING_EQUAL(hw, "test-hw");
	CU_ASSERT_STRING_EQUAL(cur, "CNY");
	sums_t s;
	sums_of(db, "id = 1", &s);
	CU_ASSERT_EQUAL(s.marg, rate);
	const char *fallbacks[] = { "", "no-such-profile", "../hw/test-hw", "/etc/passwd" };
	for (int i = 0; i < 4; i++) {
		CU_ASSERT_EQUAL(book(b, db, "j", 1, fallbacks[i], &busy, 1, 0, NULL), 0);
		profile_of_row(db, 2 + i, hw, sizeof(hw), cur, sizeof(cur), &rate);
		CU_ASSERT_STRING_EQUAL(hw, "cpu-2vcpu");
		CU_ASSERT_STRING_EQUAL(cur, "USD");
		CU_ASSERT_EQUAL(rate, c.fallback.rate_busy_micros_per_hour);
	}
	sqlite3_close(db);
	booking_destroy(&b);
	booking_conf_done(&c);

	/* --hardware: every worker, whatever it announced. */
	const char *forced[] = { "hardware=test-hw", NULL };
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, dir, forced, err, sizeof(err)), 0);
	CU_ASSERT(c.has_forced);
	CU_ASSERT_STRING_EQUAL(c.currency, "CNY");
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	db = ledger_db();
	CU_ASSERT_EQUAL(book(b, db, "j", 0, "cpu-2vcpu", &busy, 1, 0, NULL), 0);
	profile_of_row(db, 1, hw, sizeof(hw), cur, sizeof(cur), &rate);
	CU_ASSERT_STRING_EQUAL(hw, "test-hw");
	sqlite3_close(db);
	booking_destroy(&b);
	booking_conf_done(&c);

	/* No profile anywhere. */
	dir = data_dir(false);
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, dir, NULL, err, sizeof(err)), 0);
	CU_ASSERT_FALSE(c.has_fallback);
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	db = ledger_db();
	journal_usage_t sum;
	memset(&sum, 0, sizeof(sum));
	CU_ASSERT_EQUAL(book(b, db, "j", 0, "nothing", &busy, 1, 0, &sum), 0);
	profile_of_row(db, 1, hw, sizeof(hw), cur, sizeof(cur), &rate);
	CU_ASSERT_STRING_EQUAL(hw, "nothing");
	CU_ASSERT_STRING_EQUAL(cur, "");
	CU_ASSERT_EQUAL(sum.calls, 1);
	CU_ASSERT_EQUAL(sum.busy_ns, (int64_t)busy);
	CU_ASSERT_EQUAL(sum.cost_loaded_micros, 0);
	sqlite3_close(db);
	booking_destroy(&b);
	booking_conf_done(&c);
}

/* [meter] keys: defaults, typos, bad values, each named in the message. */
static void test_conf(void)
{
	char err[1024];
	booking_conf_t c;
	const char *dir = data_dir(true);
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, dir, NULL, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(c.currency, "USD");	/* the fallback profile's */
	CU_ASSERT_EQUAL(c.n_refs, 0);			/* the default refs are not in table t */
	CU_ASSERT_FALSE(c.has_sale);
	CU_ASSERT_EQUAL(c.period_ns, LEDGER_HOUR_NS);
	booking_conf_done(&c);

	const char *good[] = { "refs=ref-b, ref-a,ref-b", "currency=CNY", "sale_price=0.8/2", "period=day", NULL };
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, dir, good, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(c.n_refs, 2);
	CU_ASSERT_STRING_EQUAL(c.refs[0], "ref-b");
	CU_ASSERT_STRING_EQUAL(c.refs[1], "ref-a");
	CU_ASSERT_EQUAL(c.period_ns, LEDGER_DAY_NS);
	CU_ASSERT(c.has_sale);
	const pricetab_entry_t *e = pricetab_find(c.prices, BOOKING_SALE_ENTRY);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(e->currency, "CNY");
	CU_ASSERT_EQUAL(meter_q_cmp(e->in_per_1m, METER_Q(4, 5)), 0);
	CU_ASSERT_EQUAL(meter_q_cmp(e->out_per_1m, METER_Q(2, 1)), 0);
	booking_conf_done(&c);

	static const struct {
		const char *kv, *needle;
		int r;
	} bad[] = {
		{ "hardwar=test-hw", "hardwar", -EINVAL },
		{ "hardware=nope", "nope", -ENOENT },
		{ "refs=ref-a,gpt-9", "gpt-9", -ENOENT },
		{ "currency=yuan", "yuan", -EINVAL },
		{ "sale_price=1,5", "1,5", -EINVAL },
		{ "sale_price=-1", "-1", -EINVAL },
		{ "prices=missing.conf", "missing.conf", -ENOENT },
		{ "period=week", "hour or day", -EINVAL },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *kv[] = { bad[i].kv, NULL };
		err[0] = '\0';
		int r = load_conf(&c, dir, kv, err, sizeof(err));
		CU_ASSERT_EQUAL(r, bad[i].r);
		if (strstr(err, bad[i].needle) == NULL || strstr(err, "[meter]") == NULL)
			fprintf(stderr, "%s: message \"%s\"\n", bad[i].kv, err);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].needle));
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "[meter]"));
	}
}

/* margind's --hardware / --period / --prices are [meter] keys in opts.c's
 * table: a repeated --prices joins, a flag without its value is refused. */
static void test_argv(void)
{
	char *argv[] = { "margind", "--state-dir", "/tmp/x", "--hardware", "8xh100", "--workers", "tcp://*:1",
			 "--prices=a.conf", "--no-curve", "--prices", "b.json", "--period=day", NULL };
	char err[256];
	opts_t o;
	int r = opts_parse(&o, 12, argv, err, sizeof(err));
	if (r != 0)
		fprintf(stderr, "opts_parse: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_STRING_EQUAL(mg_config_get(o.cfg, "meter", "hardware"), "8xh100");
	CU_ASSERT_STRING_EQUAL(mg_config_get(o.cfg, "meter", "prices"), "a.conf,b.json");
	CU_ASSERT_STRING_EQUAL(mg_config_get(o.cfg, "meter", "period"), "day");
	CU_ASSERT_STRING_EQUAL(o.state_dir, "/tmp/x");
	opts_done(&o);

	char *miss[] = { "margind", "--state-dir", "/tmp/x", "--hardware", NULL };
	CU_ASSERT_EQUAL(opts_parse(&o, 4, miss, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--hardware"));
	opts_done(&o);
}

/* Through the real path: Hello, Assign, Result into the journal. The
 * rows carry the profile, rates and currency, batch jobs are via_batch,
 * synchronous ones are not, the job's usage sums equal the ledger's (before
 * the window closes, loaded = marginal; after, the window's share), and
 * when the hour ends the idle time charged plus the engine time is the time
 * from Hello to the end of the hour. */
static void test_through_sched(void)
{
	char err[1024], job[80], sjob[80];
	booking_conf_t c;
	const char *refs[] = { "refs=ref-b,ref-a", NULL };
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, data_dir(true), refs, err, sizeof(err)), 0);
	fx_t f;
	fx_open(&f, NULL);
	booking_t *b = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	int r = booking_attach(b, f.s, f.dir, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "booking_attach: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	int64_t hello_at = f.now;
	fx_hello(&f, "w1", "m", 1);	/* announces test-hw */
	fx_credit(&f, "w1", 4);
	fx_submit(&f, "j", fx_lines(10, "m", "r", 8), job);
	fx_submit(&f, "sync_1", fx_lines(3, "m", "s", 8), sjob);
	sched_dispatch(f.s, f.now);
	for (int i = 0; i < 2; i++) {
		const mg_msg_t *a = fx_next(&f, MARGIN__V1__MSG__BODY_ASSIGN, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(a);
		f.now += 5 * MG_NS_PER_S;
		fx_result(&f, "w1", a->assign);
	}
	journal_job_t jj;
	fx_job(&f, "j", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "completed");
	sqlite3 *db = NULL;
	char path[700];
	snprintf(path, sizeof(path), "%s/margin.db", f.dir);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(ledger_check_schema(db, true, err, sizeof(err)), 0);
	sums_t s, all;
	sums_of(db, "job = 'j' AND currency = 'CNY' AND hardware_profile = 'test-hw' AND via_batch = 1", &s);
	CU_ASSERT_EQUAL(s.n, 10);
	CU_ASSERT_EQUAL(s.marg, jj.usage.cost_marginal_micros);
	CU_ASSERT_EQUAL(s.load, s.marg);	/* the window is open */
	CU_ASSERT_EQUAL(s.load, jj.usage.cost_loaded_micros);
	CU_ASSERT_EQUAL(s.busy, jj.usage.busy_ns);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger WHERE period_open = 1 AND period_ns = 3600000000000"),
			13);
	hwprof_t hw;
	CU_ASSERT_EQUAL_FATAL(meter_load_profile("test-hw", c.hardware_dir, &hw, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(s.rate_busy, hw.rate_busy_micros_per_hour);
	CU_ASSERT_EQUAL(s.marg, oracle_cost(hw.rate_busy_micros_per_hour, (uint64_t)s.busy));
	sums_of(db, "job = 'sync_1' AND via_batch = 0", &s);
	CU_ASSERT_EQUAL(s.n, 3);

	/* The hour ends: margind's timer closes the window. */
	int64_t end = ledger_window_start(f.now, LEDGER_HOUR_NS) + LEDGER_HOUR_NS, next = 0;
	f.now = end;
	CU_ASSERT_EQUAL(journal_tick(f.j, &next, err, sizeof(err)), 1);
	CU_ASSERT_EQUAL(next, end + 10 * MG_NS_PER_S);	/* 10 s, for workers that leave */
	fx_job(&f, "j", &jj);
	sums_of(db, "job = 'j'", &s);
	CU_ASSERT(s.load > s.marg);
	CU_ASSERT_EQUAL(s.load, jj.usage.cost_loaded_micros);
	CU_ASSERT_EQUAL(s.marg, jj.usage.cost_marginal_micros);
	sums_of(db, "1", &all);
	CU_ASSERT_EQUAL(all.n, 13);
	CU_ASSERT_EQUAL(all.idle + all.busy, end - hello_at);
	CU_ASSERT_EQUAL(all.load, cu_sql_int(db, "SELECT node_cost_micros FROM ledger_period WHERE closed = 1"));
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger WHERE period_open = 1"), 0);
	/* The journal's own Result transaction carried the equivalents: one
	 * per call and reference, the batch's at its batch tier. */
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api"), 13 * 2);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger l WHERE (SELECT count(*) FROM ledger_api a"
			     " WHERE a.ledger_id = l.id) != 2"), 0);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api_view v JOIN ledger l ON l.id = v.ledger_id"
			     " WHERE l.job = 'sync_1' AND v.price_source LIKE '%batch call%'"), 0);
	sqlite3_close(db);
	fx_close(&f);
	booking_destroy(&b);
	booking_conf_done(&c);
}

/* Every booked call gets one closed-API equivalent per reference model,
 * written with its ledger row in the Result's transaction: exactly the
 * meter's price of its tokens (batch tier when via the Batch API, the
 * row's currency), with what priced it; a Result rolled back leaves
 * neither rows nor equivalents nor pricings. */
static void test_api_booked(void)
{
	char err[1024];
	booking_conf_t c;
	const char *refs[] = { "refs=ref-a,ref-b", NULL };
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, data_dir(true), refs, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(c.n_refs, 2);
	booking_t *b = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	wall_now = 1000;
	sqlite3 *db = ledger_db();
	uint64_t busy[5] = { 10, 20, 30, 40, 50 };
	CU_ASSERT_EQUAL(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL_FATAL(book(b, db, "j", 0, "test-hw", busy, 5, 0, NULL), 0);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api"), 10);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger l WHERE (SELECT count(*) FROM ledger_api a"
			     " WHERE a.ledger_id = l.id) != 2"), 0);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api_price"), 2);

	/* Each one is the meter's price of the call, read back as reports do. */
	ledger_rows_t *rows = NULL;
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, NULL, &rows, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(rows->n, 5);
	for (size_t i = 0; i < rows->n; i++) {
		const ledger_row_t *w = &rows->v[i];
		CU_ASSERT_EQUAL_FATAL(w->n_api, 2);
		for (size_t r = 0; r < 2; r++) {
			const ledger_api_t *a = ledger_row_find_api(w, c.refs[r]);
			int64_t want = -1;
			CU_ASSERT_PTR_NOT_NULL_FATAL(a);
			CU_ASSERT_EQUAL(cost_api_equivalent(c.prices, pricetab_find(c.prices, c.refs[r]), w->prompt_tokens,
							    w->completion_tokens, w->via_batch, "CNY", &want, err,
							    sizeof(err)), 0);
			CU_ASSERT_EQUAL(a->micros, want);
			CU_ASSERT_STRING_EQUAL(a->price->currency, "CNY");	/* the row's (test-hw's) */
			CU_ASSERT_STRING_EQUAL(a->price->price_table, "t");
			CU_ASSERT_STRING_EQUAL(a->price->price_date, "2026");
			CU_ASSERT_PTR_NOT_NULL(strstr(a->price->price_source, "t.conf"));
		}
		/* 7 x 0.15 + 3 x 0.6 = 2.85 micro-USD x 7.2 = 20.52; 7 x 0.5 + 3 x 2 = 9.5 micro-CNY. */
		CU_ASSERT_EQUAL(ledger_row_find_api(w, "ref-a")->micros, 21);
		CU_ASSERT_STRING_EQUAL(ledger_row_find_api(w, "ref-a")->price->fx_rate, "7.2");
		CU_ASSERT_STRING_EQUAL(ledger_row_find_api(w, "ref-a")->price->price_currency, "USD");
		CU_ASSERT_EQUAL(ledger_row_find_api(w, "ref-b")->micros, 10);
		CU_ASSERT_STRING_EQUAL(ledger_row_find_api(w, "ref-b")->price->fx_rate, "1");
	}
	ledger_rows_destroy(&rows);

	/* Rolled back: a synchronous job's Result (a new pricing: no batch
	 * call) and a batch one leave nothing behind. */
	wall_now += 1000;
	CU_ASSERT_EQUAL(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL_FATAL(book(b, db, "sync_1", 1, "test-hw", busy, 3, 0, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(book(b, db, "j", 0, "test-hw", busy, 2, 0, NULL), 0);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api"), 20);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api_price"), 4);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger"), 5);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api"), 10);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api_price"), 2);
	/* And booked again after the rollback, the pricing comes back. */
	CU_ASSERT_EQUAL_FATAL(book(b, db, "sync_1", 1, "test-hw", busy, 3, 0, NULL), 0);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api_view v JOIN ledger l ON l.id = v.ledger_id"
			     " WHERE l.job = 'sync_1' AND v.price_source NOT LIKE '%batch call%'"), 6);
	sqlite3_close(db);
	booking_destroy(&b);
	booking_conf_done(&c);

	/* Without a profile the row has no currency: the equivalents are in
	 * the report currency (what reports read such rows in). */
	const char *none[] = { "refs=ref-a", NULL };
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, data_dir(false), none, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	db = ledger_db();
	CU_ASSERT_EQUAL_FATAL(book(b, db, "j", 0, "nothing", busy, 1, 0, NULL), 0);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api_view WHERE currency = 'USD' AND micros = 3"), 1);
	sqlite3_close(db);
	booking_destroy(&b);
	booking_conf_done(&c);
}

/* Books calls of job on worker 0 with token counts that vary. */
static void book_varied(booking_t *b, sqlite3 *db, const char *job, int n)
{
	journal_job_t jb;
	memset(&jb, 0, sizeof(jb));
	snprintf(jb.name, sizeof(jb.name), "%s", job);
	journal_shard_t sh = { .id = 1 };
	journal_result_ctx_t ctx = { &jb, &sh, "w0", "w0", "test-hw" };
	journal_call_t calls[16];
	char cids[16][16];
	for (int i = 0; i < n; i++) {
		snprintf(cids[i], sizeof(cids[i]), "%s-%d", job, i);
		calls[i] = (journal_call_t){ .job = job, .custom_id = cids[i], .line_no = i + 1, .model = "m",
					     .worker = "w0", .worker_name = "w0", .hardware_profile = "test-hw",
					     .shard_id = 1, .prompt_tokens = 100 + 37 * (uint32_t)i,
					     .completion_tokens = 1 + 13 * (uint32_t)i, .busy_ns = 1000, .answered_at_ns = 1 };
	}
	journal_usage_t sum;
	memset(&sum, 0, sizeof(sum));
	char err[512];
	int r = booking_book(b, db, &ctx, calls, (size_t)n, 0, wall_now, &sum, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "booking_book: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
}

/* The report of a past batch, as GET /v1/cost builds it: the journal's
 * rows, the [meter] tables and refs, by default or as a what-if. */
static report_t *batch_report(sqlite3 *db, const booking_conf_t *c, const char *job, bool whatif)
{
	char err[512];
	ledger_rows_t *rows = NULL;
	ledger_filter_t f = { .job = job, .default_currency = c->currency };
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &rows, err, sizeof(err)), 0);
	report_opts_t o = { .currency = "CNY", .prices = c->prices, .refs = (const char *const *)c->refs,
			    .n_refs = c->n_refs, .whatif_prices = whatif };
	report_t *r = NULL;
	int rc = report_new(rows->v, rows->n, REPORT_BY_CALL, &o, &r, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "report_new: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	ledger_rows_destroy(&rows);
	return r;
}

/* A later change of the price table margind loads (here ref-a's prices
 * doubled and ref-b's cut) leaves a past batch's default report as it was
 * booked; its what-if report under the new table changes, to exactly the
 * new table's prices; a batch booked after the change carries the new
 * prices, and both pricings stay in the journal. */
static void test_price_change(void)
{
	char err[1024], p[700];
	booking_conf_t old, cur;
	const char *dir = data_dir(true);
	const char *refs[] = { "refs=ref-a,ref-b", NULL }, *refs2[] = { "refs=ref-a,ref-b", "prices=t2", NULL };
	snprintf(p, sizeof(p), "%s/prices/t2.conf", dir);
	write_file(p, "[table]\nname = t2\n[fx]\nCNY_per_USD = 7.2\nCNY_per_USD_source = test\nCNY_per_USD_date = 2026\n"
		      "[price.ref-a]\ncurrency = USD\ninput_per_1m = 0.3\noutput_per_1m = 1.2\nsource = test 2\n"
		      "date = 2027\n[price.ref-b]\ncurrency = CNY\ninput_per_1m = 0.25\noutput_per_1m = 1\n"
		      "source = test 2\ndate = 2027\n");
	CU_ASSERT_EQUAL_FATAL(load_conf(&old, dir, refs, err, sizeof(err)), 0);
	booking_t *b = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&old, &b), 0);
	sqlite3 *db = ledger_db();
	book_varied(b, db, "past", 9);
	booking_destroy(&b);
	report_t *before = batch_report(db, &old, "past", false);
	CU_ASSERT_STRING_EQUAL(report_api_basis(before), "booked");

	/* margind restarted with the new table. */
	int r = load_conf(&cur, dir, refs2, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	report_t *after = batch_report(db, &cur, "past", false), *whatif = batch_report(db, &cur, "past", true);
	CU_ASSERT_STRING_EQUAL(report_api_basis(after), "booked");
	CU_ASSERT_STRING_EQUAL(report_api_basis(whatif), "what-if");
	CU_ASSERT_EQUAL_FATAL(after->n_rows, 9);
	ledger_rows_t *rows = NULL;
	ledger_filter_t f = { .job = "past" };
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &rows, err, sizeof(err)), 0);
	for (size_t i = 0; i < 9; i++)
		for (size_t k = 0; k < 2; k++) {
			int64_t was, now;
			const ledger_row_t *w = &rows->v[i];
			CU_ASSERT_EQUAL(cost_api_equivalent(old.prices, pricetab_find(old.prices, old.refs[k]), w->prompt_tokens,
							    w->completion_tokens, true, "CNY", &was, err, sizeof(err)), 0);
			CU_ASSERT_EQUAL(cost_api_equivalent(cur.prices, pricetab_find(cur.prices, cur.refs[k]), w->prompt_tokens,
							    w->completion_tokens, true, "CNY", &now, err, sizeof(err)), 0);
			CU_ASSERT_EQUAL(before->rows[i].api_micros[k], was);
			CU_ASSERT_EQUAL(after->rows[i].api_micros[k], was);
			CU_ASSERT_EQUAL(whatif->rows[i].api_micros[k], now);
			CU_ASSERT(now != was);
		}
	for (size_t k = 0; k < 2; k++) {
		CU_ASSERT_EQUAL(after->total.api_micros[k], before->total.api_micros[k]);
		CU_ASSERT(whatif->total.api_micros[k] != before->total.api_micros[k]);
	}
	ledger_rows_destroy(&rows);
	report_destroy(&before);
	report_destroy(&after);
	report_destroy(&whatif);

	/* A batch booked under the new table gets its prices; the past one
	 * keeps its own. */
	CU_ASSERT_EQUAL_FATAL(booking_new(&cur, &b), 0);
	book_varied(b, db, "new", 3);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api_price"), 4);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api_view v JOIN ledger l ON l.id = v.ledger_id"
			     " WHERE l.job = 'new' AND v.price_table = 't2' AND v.price_date = '2027'"), 6);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api_view v JOIN ledger l ON l.id = v.ledger_id"
			     " WHERE l.job = 'past' AND v.price_table = 't' AND v.price_date = '2026'"), 18);
	report_t *fresh = batch_report(db, &cur, "new", false), *fresh_wi = batch_report(db, &cur, "new", true);
	for (size_t k = 0; k < 2; k++)
		CU_ASSERT_EQUAL(fresh->total.api_micros[k], fresh_wi->total.api_micros[k]);
	report_destroy(&fresh);
	report_destroy(&fresh_wi);
	booking_destroy(&b);
	sqlite3_close(db);
	booking_conf_done(&old);
	booking_conf_done(&cur);
}

/* Books 3 calls of 1000 prompt tokens (0 completion) of job, whose
 * endpoint is endpoint, on worker w0. */
static void book_ep(booking_t *b, sqlite3 *db, const char *job, const char *endpoint)
{
	journal_job_t jb;
	memset(&jb, 0, sizeof(jb));
	snprintf(jb.name, sizeof(jb.name), "%s", job);
	snprintf(jb.endpoint, sizeof(jb.endpoint), "%s", endpoint);
	journal_shard_t sh = { .id = 1 };
	journal_result_ctx_t ctx = { &jb, &sh, "w0", "w0", "test-hw" };
	journal_call_t calls[3];
	char cids[3][24];
	for (int i = 0; i < 3; i++) {
		snprintf(cids[i], sizeof(cids[i]), "%s-%d", job, i);
		calls[i] = (journal_call_t){ .job = job, .custom_id = cids[i], .line_no = i + 1, .model = "m",
					     .worker = "w0", .worker_name = "w0", .hardware_profile = "test-hw",
					     .shard_id = 1, .prompt_tokens = 1000, .busy_ns = 1000000000ULL * (uint64_t)(i + 1),
					     .answered_at_ns = 1 };
	}
	journal_usage_t sum;
	memset(&sum, 0, sizeof(sum));
	char err[512];
	int r = booking_book(b, db, &ctx, calls, 3, 0, wall_now, &sum, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "booking_book: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL(sum.prompt_tokens, 3000);
	CU_ASSERT(sum.cost_marginal_micros > 0);
}

/* An embedding call (its job's endpoint /v1/embeddings) is booked like any
 * call (tokens, busy time, marginal cost) and its closed-API equivalents
 * are on the embedding references only ([meter] embed_refs), batch tier
 * for a batch, list price for the synchronous API, converted into the
 * row's currency; a chat call's are on the chat references only. A chat
 * price in embed_refs, or an embedding price in refs, is refused. */
static void test_embedding(void)
{
	char err[1024];
	booking_conf_t c;
	const char *refs[] = { "refs=ref-a,ref-b", "embed_refs=emb-a, emb-b", NULL };
	const char *dir = data_dir(true);
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, dir, refs, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(c.n_refs, 2);
	CU_ASSERT_EQUAL_FATAL(c.n_embed_refs, 2);
	booking_t *b = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	wall_now = 1000;
	sqlite3 *db = ledger_db();
	book_ep(b, db, "batch_chat", "/v1/chat/completions");
	book_ep(b, db, "batch_emb", "/v1/embeddings");
	book_ep(b, db, "sync_emb", "/v1/embeddings");
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger WHERE endpoint = '/v1/embeddings'"), 6);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger WHERE endpoint = '/v1/chat/completions'"), 3);
	/* Booked like any call: tokens, busy time, a marginal cost. */
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT sum(prompt_tokens) FROM ledger WHERE job = 'batch_emb'"), 3000);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT sum(busy_ns) FROM ledger WHERE job = 'batch_emb'"), 6000000000LL);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger WHERE cost_marginal_micros <= 0"), 0);
	/* Two equivalents per call, each of the call's own kind. */
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api_view v JOIN ledger l ON l.id = v.ledger_id"
			     " WHERE l.endpoint = '/v1/embeddings' AND v.ref_model LIKE 'emb-%'"), 12);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api_view v JOIN ledger l ON l.id = v.ledger_id"
			     " WHERE l.endpoint = '/v1/chat/completions' AND v.ref_model LIKE 'ref-%'"), 6);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api"), 18);

	ledger_rows_t *rows = NULL;
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, NULL, &rows, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(rows->n, 9);
	for (size_t i = 0; i < rows->n; i++) {
		const ledger_row_t *w = &rows->v[i];
		bool emb = strcmp(w->endpoint, "/v1/embeddings") == 0;
		CU_ASSERT_EQUAL(emb, i >= 3);
		CU_ASSERT_EQUAL_FATAL(w->n_api, 2);
		CU_ASSERT_PTR_NULL(ledger_row_find_api(w, emb ? "ref-a" : "emb-a"));
		CU_ASSERT_PTR_NULL(ledger_row_find_api(w, emb ? "ref-b" : "emb-b"));
		const ledger_api_t *a = ledger_row_find_api(w, emb ? "emb-a" : "ref-a");
		const ledger_api_t *x = ledger_row_find_api(w, emb ? "emb-b" : "ref-b");
		CU_ASSERT_FATAL(a != NULL && x != NULL);
		bool batch = strcmp(w->job, "sync_emb") != 0;
		CU_ASSERT_EQUAL(w->via_batch, batch);
		if (emb) {
			/* 1000 x 0.01 (batch) or 0.02 micro-USD x 7.2; 1000 x 0.25 or 0.5 micro-CNY. */
			CU_ASSERT_EQUAL(a->micros, batch ? 72 : 144);
			CU_ASSERT_EQUAL(x->micros, batch ? 250 : 500);
			CU_ASSERT_STRING_EQUAL(a->price->input_per_1m, batch ? "0.01" : "0.02");
			CU_ASSERT_STRING_EQUAL(a->price->output_per_1m, "0");
			CU_ASSERT_STRING_EQUAL(a->price->fx_rate, "7.2");
		} else {
			CU_ASSERT_EQUAL(a->micros, 1080);	/* 1000 x 0.15 x 7.2 */
			CU_ASSERT_EQUAL(x->micros, 500);
		}
	}
	ledger_rows_destroy(&rows);
	sqlite3_close(db);
	booking_destroy(&b);
	booking_conf_done(&c);

	/* Each list holds its own kind only. */
	static const struct {
		const char *set, *want;
		int r;
	} bad[] = {
		{ "refs=ref-a,emb-a", "[meter] refs: emb-a is an embedding price (mode = embedding)", -EINVAL },
		{ "embed_refs=emb-a,ref-b", "[meter] embed_refs: ref-b is a chat price (mode = chat), not an embedding", -EINVAL },
		{ "embed_refs=emb-z", "no price \"emb-z\"", -ENOENT },
		{ "embed_ref=emb-a", "embed_refs", -EINVAL },	/* a typo: the known keys are named */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *set[] = { bad[i].set, NULL };
		CU_ASSERT_EQUAL(load_conf(&c, dir, set, err, sizeof(err)), bad[i].r);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].want));
		if (strstr(err, bad[i].want) == NULL)
			fprintf(stderr, "got: %s\n", err);
	}
	/* Without embed_refs the defaults the tables hold: none in t.conf. */
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, dir, NULL, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(c.n_embed_refs, 0);
	booking_conf_done(&c);
}

static int64_t wall_of(void *user)
{
	return wall_now;
}

/* The ledger's rows and cost sums in db, as one line to compare. */
static void ledger_sums(sqlite3 *db, char *buf, size_t len)
{
	snprintf(buf, len, "rows=%lld marginal=%lld loaded=%lld",
		 (long long)cu_sql_int(db, "SELECT COUNT(*) FROM ledger"),
		 (long long)cu_sql_int(db, "SELECT TOTAL(cost_marginal_micros) FROM ledger"),
		 (long long)cu_sql_int(db, "SELECT TOTAL(cost_loaded_micros) FROM ledger"));
}

/* journal_result_apply through the booking hook with allocation n
 * failing (margin's and SQLite's), for n = 1, 2, ... until it succeeds:
 * each failure is -ENOMEM with a reason, and after the rollback no
 * request is answered and no ledger row written; the ledger written at
 * last equals that of a journal that never failed (nothing the booking
 * keeps outside the transaction drifted). */
static void test_result_enomem(void)
{
	char err[1024];
	booking_conf_t c;
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, data_dir(true), NULL, err, sizeof(err)), 0);
	journal_t *j[2] = { NULL, NULL };
	booking_t *b[2] = { NULL, NULL };
	sqlite3 *db[2] = { NULL, NULL };
	journal_job_t job[2];
	journal_shard_t sh[2];
	wall_now = 490000 * LEDGER_HOUR_NS;
	for (int k = 0; k < 2; k++) {
		char dir[512], path[600];
		fx_newdir(dir, sizeof(dir));
		CU_ASSERT_EQUAL_FATAL(journal_open(dir, JOURNAL_SYNC_NORMAL, &j[k], err, sizeof(err)), 0);
		journal_set_clock(j[k], wall_of, NULL);
		CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b[k]), 0);
		journal_set_book_fn(j[k], booking_book, b[k]);
		int64_t id = fx_job_new(j[k], "jb", 3, "/v1/completions");
		CU_ASSERT_EQUAL_FATAL(journal_job_find(j[k], "jb", &job[k]), 0);
		fx_shard_new(j[k], id, 1, 3, &sh[k]);
		snprintf(path, sizeof(path), "%s/margin.db", dir);
		CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &db[k], SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	}
	Margin__V1__Usage use[3];
	Margin__V1__Output out[3], *outs[3];
	char cids[3][8];
	for (int i = 0; i < 3; i++) {
		margin__v1__usage__init(&use[i]);
		use[i].busy_ns = 1234567u * (uint64_t)(i + 1);
		margin__v1__output__init(&out[i]);
		snprintf(cids[i], sizeof(cids[i]), "c%d", i + 1);
		out[i].line_no = (uint64_t)i + 1;
		out[i].custom_id = cids[i];
		out[i].text = "answer";
		out[i].finish_reason = "stop";
		out[i].prompt_tokens = 10;
		out[i].completion_tokens = 3;
		out[i].usage = &use[i];
		outs[i] = &out[i];
	}
	Margin__V1__Result res = MARGIN__V1__RESULT__INIT;
	res.outputs = outs;
	res.n_outputs = 3;
	journal_counts_t cnt;
	memset(&cnt, 0, sizeof(cnt));
	journal_result_ctx_t ref_ctx = { &job[1], &sh[1], "w1", "worker-a", "test-hw" };
	CU_ASSERT_EQUAL_FATAL(journal_begin(j[1]), 0);
	CU_ASSERT_EQUAL_FATAL(journal_result_apply(j[1], &ref_ctx, &res, &cnt, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(journal_commit(j[1]), 0);

	journal_result_ctx_t ctx = { &job[0], &sh[0], "w1", "worker-a", "test-hw" };
	unsigned long n = 1;
	for (;; n++) {
		memset(&cnt, 0, sizeof(cnt));
		err[0] = '\0';
		CU_ASSERT_EQUAL_FATAL(journal_begin(j[0]), 0);
		cu_alloc_fail_at(n);
		int rc = journal_result_apply(j[0], &ctx, &res, &cnt, err, sizeof(err));
		bool failed = cu_alloc_reset();
		if (!failed) {
			CU_ASSERT_EQUAL(rc, 0);
			CU_ASSERT_EQUAL(journal_commit(j[0]), 0);
			CU_ASSERT_EQUAL(cnt.done, 3);
			break;
		}
		journal_rollback(j[0]);
		if (rc != -ENOMEM || err[0] == '\0') {
			fprintf(stderr, "\n  allocation %lu failed: rc=%d err=\"%s\"\n", n, rc, err);
			CU_FAIL("journal_result_apply did not fail cleanly with -ENOMEM");
			break;
		}
		CU_ASSERT_EQUAL(cu_sql_int(db[0], "SELECT COUNT(*) FROM requests WHERE state = 'queued'"), 3);
		CU_ASSERT_EQUAL(cu_sql_int(db[0], "SELECT COUNT(*) FROM ledger"), 0);
	}
	CU_ASSERT(n > 1);
	char got[128], want[128];
	ledger_sums(db[0], got, sizeof(got));
	ledger_sums(db[1], want, sizeof(want));
	if (strcmp(got, want) != 0)
		fprintf(stderr, "\n  after the failures: %s\n  never failed:       %s\n", got, want);
	CU_ASSERT_STRING_EQUAL(got, want);
	CU_ASSERT_EQUAL(cu_sql_int(db[0], "SELECT COUNT(*) FROM ledger"), 3);
	for (int k = 0; k < 2; k++) {
		sqlite3_close(db[k]);
		journal_destroy(&j[k]);
		booking_destroy(&b[k]);
	}
	booking_conf_done(&c);
}

const cu_test_t booking_tests[] = {
	{ "result_enomem", test_result_enomem },
	{ "embedding", test_embedding },
	{ "api_booked", test_api_booked },
	{ "price_change", test_price_change },
	{ "rollback", test_rollback },
	{ "idle_hour", test_idle_hour },
	{ "windows", test_windows },
	{ "day", test_day },
	{ "profiles", test_profiles },
	{ "conf", test_conf },
	{ "argv", test_argv },
	{ "through_sched", test_through_sched },
	{ NULL, NULL },
};
