/* mg_cpu: how many CPUs this process may run on.
 *
 * The default thread count of the worker's engine. sysconf(_SC_NPROCESSORS_ONLN)
 * counts every core of the host; under systemd's CPUAffinity=, Slurm's CPU
 * binding or a container's cpuset that oversubscribes what the process may
 * use, so the affinity mask decides. Any thread. */
#ifndef MG_CPU_H
#define MG_CPU_H

/* CPUs in this thread's affinity mask (>= 1). */
int mg_cpu_count(void);

#endif
