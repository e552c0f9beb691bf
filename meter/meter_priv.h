/* meter private header: 128-bit exact rationals for the intermediate steps
 * of the rate formula and the price arithmetic (not part of the interface
 * the daemon and marginctl use). */
#ifndef METER_PRIV_H
#define METER_PRIV_H

#include "meter.h"
#include "lib/mg_int128.h"

typedef mg_i128 meter_i128;

/* den > 0, reduced. */
typedef struct meter_wq {
	meter_i128 num;
	meter_i128 den;
} meter_wq_t;

meter_wq_t meter_wq_from(meter_q_t q);
meter_wq_t meter_wq_int(int64_t v);
/* -ERANGE on 128-bit overflow, -EDOM on division by zero. */
int meter_wq_add(meter_wq_t a, meter_wq_t b, meter_wq_t *ret);
int meter_wq_sub(meter_wq_t a, meter_wq_t b, meter_wq_t *ret);
int meter_wq_mul(meter_wq_t a, meter_wq_t b, meter_wq_t *ret);
int meter_wq_div(meter_wq_t a, meter_wq_t b, meter_wq_t *ret);
/* Round half away from zero to int64. -ERANGE. */
int meter_wq_round(meter_wq_t a, int64_t *ret);
/* Narrow to a meter_q_t. -ERANGE. */
int meter_wq_narrow(meter_wq_t a, meter_q_t *ret);
/* round(num / den) half away from zero, den > 0. */
meter_i128 meter_div_round(meter_i128 num, meter_i128 den);

#endif
