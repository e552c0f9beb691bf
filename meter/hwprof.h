/* hwprof: hardware profiles and the node rate.
 *
 * A profile is an INI file (lib/mg_config.h) with one [hardware] section,
 * e.g. deploy/hardware/8xh100.conf:
 *
 *   [hardware]
 *   name = 8xh100
 *   currency = CNY
 *   purchase_price = 2700000
 *   purchase_price_source = Huxiu via soramidjourney.com/?p=5618
 *   purchase_price_date = 2024-07
 *   ...
 *
 * Every number NAME comes with NAME_source and NAME_date (free text, not
 * empty); a number without them, an unknown key, a negative price or a PUE
 * below 1 is an error that names the file, section and key. Numbers are
 * parsed exactly (meter_q_t). See docs/economics.md for every key.
 *
 * Node rate (currency micro-units per hour), computed exactly and rounded
 * once, half away from zero, to whole micros per hour:
 *
 *   rate = (purchase_price - salvage_value) / (depreciation_years * hours_per_year)
 *        + power_watts / 1000 * pue * electricity_per_kwh
 *        + fixed_per_hour
 *
 * rate_busy uses power_watts_load, rate_idle power_watts_idle. These two
 * integers are the published rates: every cost is computed from them.
 *
 * A rented node (a cloud instance, a GPU-hour price) has purchase_price 0,
 * power 0 (included in the rent) and the rent as fixed_per_hour.
 *
 * Throughput measured on the hardware: `bench = FILE.json[, FILE.json...]`,
 * `margin-worker bench --json` outputs taken on it, one per model shape
 * (paths relative to the profile's directory). Each must be readable and a
 * valid bench output when the profile is loaded; speed.h picks the one of
 * a model's shape.
 *
 * A hwprof_t is a plain value (no heap): copy it freely. Any thread. */
#ifndef HWPROF_H
#define HWPROF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meter.h"
#include "lib/mg_config.h"

enum hwprof_field {
	HWPROF_PURCHASE_PRICE,		/* currency units, whole node */
	HWPROF_SALVAGE_VALUE,		/* currency units at end of life (default 0) */
	HWPROF_DEPRECIATION_YEARS,	/* straight-line life */
	HWPROF_HOURS_PER_YEAR,		/* default 8760 */
	HWPROF_POWER_WATTS_LOAD,	/* average IT power while busy, W */
	HWPROF_POWER_WATTS_IDLE,	/* IT power while idle, W (default = load) */
	HWPROF_PUE,			/* facility power / IT power, >= 1 */
	HWPROF_ELECTRICITY_PER_KWH,	/* currency units per kWh */
	HWPROF_FIXED_PER_HOUR,		/* rent, space, staff, network... per hour (default 0) */
	HWPROF_PEAK_FLOPS_FP32,		/* node peak FLOP/s, fp32 (optional) */
	HWPROF_PEAK_FLOPS_FP16,		/* node peak dense FLOP/s, fp16/bf16 (optional) */
	HWPROF_MEM_BANDWIDTH,		/* node memory bandwidth, bytes/s (optional) */
	HWPROF_MEMORY_BYTES,		/* accelerator memory of the node (GPU: HBM of all
					   cards; CPU: RAM), bytes (optional; plan.h) */
	HWPROF_N_FIELDS
};

#define HWPROF_TEXT 200	/* inih's line limit on Debian is 200 characters */
#define HWPROF_MAX_BENCH 8	/* bench files per profile */

typedef struct hwprof_num {
	meter_q_t value;
	bool given;			/* false: absent (optional) or defaulted */
	char source[HWPROF_TEXT];	/* "default: ..." when defaulted */
	char date[48];
} hwprof_num_t;

typedef struct hwprof {
	char name[64];
	char description[HWPROF_TEXT];
	char currency[4];
	char pricing[16];		/* "owned" or "rental" */
	char accelerator[96];		/* e.g. "NVIDIA H100 SXM 80GB" or "vCPU" */
	uint32_t accelerators;		/* count per node (0 = not stated) */
	char origin[256];		/* file it was read from */
	hwprof_num_t f[HWPROF_N_FIELDS];
	char bench[HWPROF_MAX_BENCH][512];	/* attached bench outputs (paths as resolved) */
	size_t n_bench;

	/* Computed by the loader (micros per hour). The components are exact
	 * rationals in currency units per hour, kept for the description. */
	int64_t rate_busy_micros_per_hour;
	int64_t rate_idle_micros_per_hour;
	meter_q_t depreciation_per_hour, power_busy_per_hour, power_idle_per_hour, fixed_per_hour;
} hwprof_t;

/* Reads a profile file. -ENOENT/-EACCES, -EINVAL with a message naming the
 * file, section and key; ret is written only on success. */
int hwprof_load(const char *path, hwprof_t *ret, char *err, size_t errlen);
/* Same from text (tests); name is used in messages. */
int hwprof_load_string(const char *name, const char *text, hwprof_t *ret, char *err, size_t errlen);
/* Reads section `section` (normally "hardware") of an already loaded
 * configuration, e.g. margind's own config file. */
int hwprof_from_config(const mg_config_t *cfg, const char *section, hwprof_t *ret,
		       char *err, size_t errlen);
/* Loads DIR/NAME.conf (the name a worker announces in Hello). -EINVAL for a
 * name with '/' or starting with '.'; -ENOENT when there is no such file,
 * with a message listing the profiles of dir (meter_unknown_name). */
int hwprof_find(const char *dir, const char *name, hwprof_t *ret, char *err, size_t errlen);

/* Recomputes the two rates from hw->f (after a caller changed a number,
 * e.g. a what-if on the electricity price). -ERANGE, -EINVAL. */
int hwprof_compute(hwprof_t *hw, char *err, size_t errlen);

/* The INI key of a field ("purchase_price"). */
const char *hwprof_field_key(enum hwprof_field f);
/* Unit of a field for people ("CNY", "W", "years", "FLOP/s"...), given the
 * profile's currency. Borrowed from hw or static. */
const char *hwprof_field_unit(const hwprof_t *hw, enum hwprof_field f);

/* A text description: every number with its unit, source and date, then the
 * rate formula with the computed terms. Caller frees. NULL on ENOMEM. */
char *hwprof_describe(const hwprof_t *hw);

#endif
