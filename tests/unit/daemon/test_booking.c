/* booking: [meter] settings, margind's meter flags, and the pricing of
 * Results — conservation per (batch, worker) against an independent
 * 128-bit oracle, the idle-time rule, rollback, profile fallbacks, and the
 * hook wired through the journal and sched. */
#include "booking.h"
#include "cost.h"
#include "cu_sql.h"
#include "fixture.h"
#include "ledger.h"
#include "report.h"
#include "meter.h"
#include "opts.h"
#include "tests.h"

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
	"output_per_1m = 2\nsource = test\ndate = 2026\n";

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
	unsigned __int128 d = 3600000000000ULL;
	return (int64_t)(((unsigned __int128)rate * ns + d / 2) / d);
}

/* --- a ledger of our own and a fake clock ------------------------------- */

typedef struct clk {
	int64_t now;
	int64_t joined[4];	/* per worker "w0".."w3"; < 0 unknown */
} clk_t;

static int64_t clk_now(void *user)
{
	return ((clk_t *)user)->now;
}

static int64_t clk_joined(void *user, const char *worker)
{
	return ((clk_t *)user)->joined[worker[1] - '0'];
}

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
	int r = booking_book(b, db, &ctx, calls, n, failed, sum ? sum : &none, err, sizeof(err));
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

/* Many Results of three batches on two workers, busy times random (zeros,
 * tiny, hours): per (batch, worker) the calls' marginal costs sum to the
 * node cost of their busy time, and loaded - marginal to the idle rate x
 * the idle time charged, to the micro; per worker the idle time charged
 * plus the engine time is exactly the time since it joined (Results never
 * overlap here). */
static void test_conservation(void)
{
	char err[1024];
	booking_conf_t c;
	const char *dir = data_dir(true);
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, dir, NULL, err, sizeof(err)), 0);
	booking_t *b = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	clk_t k = { .now = 5000000000LL, .joined = { 1000000000LL, 3000000000LL, -1, -1 } };
	booking_set_clock(b, clk_now, clk_joined, &k);
	sqlite3 *db = ledger_db();
	uint64_t x = 88172645463325252ULL, failed_busy[2] = { 0, 0 };
	int64_t last[2] = { 0, 0 };
	const char *jobs[3] = { "ja", "jb", "jc" };
	for (int step = 0; step < 300; step++) {
		uint64_t busy[64], total = 0;
		size_t n = 1 + rnd(&x) % 20;
		for (size_t i = 0; i < n; i++) {
			uint64_t kind = rnd(&x) % 8;
			busy[i] = kind == 0 ? 0 : kind == 1 ? rnd(&x) % 1000 : kind == 2 ? rnd(&x) % 7200000000000ULL :
				  rnd(&x) % 3000000000ULL;
			total += busy[i];
		}
		int w = (int)(rnd(&x) % 2);
		uint64_t failed = rnd(&x) % 4 == 0 ? rnd(&x) % 1000000000ULL : 0;
		failed_busy[w] += failed;
		/* The clock moves on by at least the engine time: no overlap. */
		k.now += (int64_t)(total + failed + rnd(&x) % 2000000000ULL);
		CU_ASSERT_EQUAL_FATAL(book(b, db, jobs[rnd(&x) % 3], w, "test-hw", busy, n, failed, NULL), 0);
		last[w] = k.now;
	}
	hwprof_t hw;
	snprintf(err, sizeof(err), "%s/hw/test-hw.conf", dir);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(err, &hw, err, sizeof(err)), 0);
	CU_ASSERT(hw.rate_busy_micros_per_hour != hw.rate_idle_micros_per_hour);
	for (int w = 0; w < 2; w++) {
		for (int j = 0; j < 3; j++) {
			char where[128];
			sums_t s;
			snprintf(where, sizeof(where), "job = '%s' AND worker = 'w%d'", jobs[j], w);
			sums_of(db, where, &s);
			CU_ASSERT(s.n > 0);
			CU_ASSERT_EQUAL(s.rate_busy, hw.rate_busy_micros_per_hour);
			CU_ASSERT_EQUAL(s.rate_idle, hw.rate_idle_micros_per_hour);
			CU_ASSERT_EQUAL(s.marg, oracle_cost(hw.rate_busy_micros_per_hour, (uint64_t)s.busy));
			CU_ASSERT_EQUAL(s.load - s.marg, oracle_cost(hw.rate_idle_micros_per_hour, (uint64_t)s.idle));
			CU_ASSERT(s.loaded_ge_marginal);
		}
		char where[64];
		sums_t s;
		snprintf(where, sizeof(where), "worker = 'w%d'", w);
		sums_of(db, where, &s);
		CU_ASSERT_EQUAL(s.busy + (int64_t)failed_busy[w] + s.idle, last[w] - k.joined[w]);
	}
	sqlite3_close(db);
	booking_destroy(&b);
	booking_conf_done(&c);
}

/* Overlapping Results (a worker holding two shards): a Result whose engine
 * time is more than the time since the previous one is charged no idle
 * time, and the idle charged in total is the unexplained time at the end,
 * not the sum of the positive gaps. */
static void test_idle_overlap(void)
{
	char err[1024];
	booking_conf_t c;
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, data_dir(true), NULL, err, sizeof(err)), 0);
	booking_t *b = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	clk_t k = { .now = 0, .joined = { 0, -1, -1, -1 } };
	booking_set_clock(b, clk_now, clk_joined, &k);
	sqlite3 *db = ledger_db();
	/* (time of the Result, its engine time): the 2nd overlaps the 1st. */
	static const int64_t at[] = { 100000, 120000, 200000 }, busy_of[] = { 50000, 60000, 10000 };
	int64_t idle[3], before = 0;
	for (int i = 0; i < 3; i++) {
		uint64_t bz = (uint64_t)busy_of[i];
		k.now = at[i];
		CU_ASSERT_EQUAL_FATAL(book(b, db, "j", 0, "test-hw", &bz, 1, 0, NULL), 0);
		sums_t s;
		sums_of(db, "1", &s);
		idle[i] = s.idle - before;
		before = s.idle;
	}
	CU_ASSERT_EQUAL(idle[0], at[0] - busy_of[0]);
	CU_ASSERT_EQUAL(idle[1], 0);
	sums_t s;
	sums_of(db, "1", &s);
	CU_ASSERT_EQUAL(s.idle, at[2] - (busy_of[0] + busy_of[1] + busy_of[2]));
	/* The "gap minus this Result's busy" rule would have charged more. */
	int64_t gaps = 0, prev = 0;
	for (int i = 0; i < 3; i++) {
		int64_t g = at[i] - prev - busy_of[i];
		gaps += g > 0 ? g : 0;
		prev = at[i];
	}
	CU_ASSERT(s.idle < gaps);
	sqlite3_close(db);
	booking_destroy(&b);
	booking_conf_done(&c);
}

/* A Result booked inside a transaction that rolls back leaves no trace:
 * booking it again, and the next one, gives what a journal that never saw
 * the rollback gives. */
static void test_rollback(void)
{
	char err[1024];
	booking_conf_t c;
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, data_dir(true), NULL, err, sizeof(err)), 0);
	booking_t *b = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b), 0);
	clk_t k = { .now = 0, .joined = { 0, -1, -1, -1 } };
	booking_set_clock(b, clk_now, clk_joined, &k);
	sqlite3 *db = ledger_db(), *ref = ledger_db();
	uint64_t a[3] = { 1234567, 7654321, 1 }, bb[2] = { 99999999, 3 };
	k.now = 2000000000;
	CU_ASSERT_EQUAL(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(book(b, db, "j", 0, "test-hw", a, 3, 0, NULL), 0);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	k.now = 3000000000;
	CU_ASSERT_EQUAL(book(b, db, "j", 0, "test-hw", a, 3, 0, NULL), 0);
	k.now = 4000000000;
	CU_ASSERT_EQUAL(book(b, db, "j", 0, "test-hw", bb, 2, 0, NULL), 0);
	/* The same on a journal without the rollback (a fresh booking: the
	 * carried sums live on the connection). */
	booking_t *b2 = NULL;
	CU_ASSERT_EQUAL_FATAL(booking_new(&c, &b2), 0);
	booking_set_clock(b2, clk_now, clk_joined, &k);
	k.now = 3000000000;
	CU_ASSERT_EQUAL(book(b2, ref, "j", 0, "test-hw", a, 3, 0, NULL), 0);
	k.now = 4000000000;
	CU_ASSERT_EQUAL(book(b2, ref, "j", 0, "test-hw", bb, 2, 0, NULL), 0);
	sums_t s1, s2;
	sums_of(db, "1", &s1);
	sums_of(ref, "1", &s2);
	CU_ASSERT_EQUAL(s1.n, 5);
	CU_ASSERT_EQUAL(s1.n, s2.n);
	CU_ASSERT_EQUAL(s1.idle, s2.idle);
	CU_ASSERT_EQUAL(s1.idle, 4000000000 - (int64_t)(a[0] + a[1] + a[2] + bb[0] + bb[1]));
	CU_ASSERT_EQUAL(s1.marg, s2.marg);
	CU_ASSERT_EQUAL(s1.load, s2.load);
	sqlite3_close(db);
	sqlite3_close(ref);
	booking_destroy(&b);
	booking_destroy(&b2);
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
	booking_conf_done(&c);

	const char *good[] = { "refs=ref-b, ref-a,ref-b", "currency=CNY", "sale_price=0.8/2", NULL };
	CU_ASSERT_EQUAL_FATAL(load_conf(&c, dir, good, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(c.n_refs, 2);
	CU_ASSERT_STRING_EQUAL(c.refs[0], "ref-b");
	CU_ASSERT_STRING_EQUAL(c.refs[1], "ref-a");
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

/* margind's --hardware / --prices become [meter] keys opts.c keeps. */
static void test_argv(void)
{
	char *argv[] = { "margind", "--state-dir", "/tmp/x", "--hardware", "8xh100", "--workers", "tcp://*:1",
			 "--prices=a.conf", "--no-curve", "--prices", "b.json", NULL };
	int n = 0;
	char **out = NULL, err[256];
	bool help = true;
	CU_ASSERT_EQUAL_FATAL(booking_argv(11, argv, &n, &out, &help, err, sizeof(err)), 0);
	CU_ASSERT_FALSE(help);
	opts_t o;
	int r = opts_parse(&o, n, out, err, sizeof(err));
	if (r != 0)
		fprintf(stderr, "opts_parse: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_STRING_EQUAL(mg_config_get(o.cfg, "meter", "hardware"), "8xh100");
	CU_ASSERT_STRING_EQUAL(mg_config_get(o.cfg, "meter", "prices"), "a.conf,b.json");
	CU_ASSERT_STRING_EQUAL(o.state_dir, "/tmp/x");
	opts_done(&o);
	booking_argv_free(&out);
	CU_ASSERT_PTR_NULL(out);

	char *miss[] = { "margind", "--help", "--hardware", NULL };
	CU_ASSERT_EQUAL(booking_argv(3, miss, &n, &out, &help, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--hardware"));
	char *h[] = { "margind", "-h", NULL };
	CU_ASSERT_EQUAL(booking_argv(2, h, &n, &out, &help, err, sizeof(err)), 0);
	CU_ASSERT(help);
	CU_ASSERT_EQUAL(n, 2);
	booking_argv_free(&out);
}

/* Through the real path: Hello, Assign, Result into the journal. The
 * rows carry the profile, rates and currency, batch jobs are via_batch,
 * synchronous ones are not, the job's usage sums equal the ledger's, and
 * the idle time charged is the time since the worker said Hello minus its
 * engine time. */
static int64_t fx_clock(void *user)
{
	return ((fx_t *)user)->now;
}

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
	booking_set_clock(b, fx_clock, NULL, &f);
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
	CU_ASSERT_STRING_EQUAL(jj.state, "completed");
	sqlite3 *db = NULL;
	char path[700];
	snprintf(path, sizeof(path), "%s/margin.db", f.dir);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(ledger_check_schema(db, true, err, sizeof(err)), 0);
	sums_t s, all;
	sums_of(db, "job = 'j' AND currency = 'CNY' AND hardware_profile = 'test-hw' AND via_batch = 1", &s);
	CU_ASSERT_EQUAL(s.n, 10);
	CU_ASSERT_EQUAL(s.marg, jj.usage.cost_marginal_micros);
	CU_ASSERT_EQUAL(s.load, jj.usage.cost_loaded_micros);
	CU_ASSERT_EQUAL(s.busy, jj.usage.busy_ns);
	hwprof_t hw;
	CU_ASSERT_EQUAL_FATAL(meter_load_profile("test-hw", c.hardware_dir, &hw, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(s.rate_busy, hw.rate_busy_micros_per_hour);
	CU_ASSERT_EQUAL(s.marg, oracle_cost(hw.rate_busy_micros_per_hour, (uint64_t)s.busy));
	sums_of(db, "job = 'sync_1' AND via_batch = 0", &s);
	CU_ASSERT_EQUAL(s.n, 3);
	sums_of(db, "1", &all);
	CU_ASSERT_EQUAL(all.n, 13);
	CU_ASSERT_EQUAL(all.idle + all.busy, f.now - hello_at);
	CU_ASSERT(all.load > all.marg);
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
	clk_t k = { .now = 1000, .joined = { 0, 0, -1, -1 } };
	booking_set_clock(b, clk_now, clk_joined, &k);
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
	k.now += 1000;
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
	int r = booking_book(b, db, &ctx, calls, (size_t)n, 0, &sum, err, sizeof(err));
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

const cu_test_t booking_tests[] = {
	{ "api_booked", test_api_booked },
	{ "price_change", test_price_change },
	{ "conservation", test_conservation },
	{ "idle_overlap", test_idle_overlap },
	{ "rollback", test_rollback },
	{ "profiles", test_profiles },
	{ "conf", test_conf },
	{ "argv", test_argv },
	{ "through_sched", test_through_sched },
	{ NULL, NULL },
};
