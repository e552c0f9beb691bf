/* margin-worker: a worker node (serve) and offline tools over the same
 * model runtime. Subcommands are a table; each lives in cmd_<name>.c. */
#include "calib.h"
#include "cmds.h"
#include "lib/mg_log.h"
#include "lib/mg_settings.h"

#include <cblas.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const mg_settings_command_t commands[] = {
	{ "serve", cmd_serve, "connect to margind and run shards" },
	{ "run", cmd_run, "generate text from a prompt" },
	{ "tokenize", cmd_tokenize, "print the token ids of a text" },
	{ "inspect", cmd_inspect, "print a GGUF file's metadata and tensors" },
	{ "synth", cmd_synth, "write a synthetic model preset as GGUF" },
	{ "bench", cmd_bench, "measure prefill/decode throughput against this machine's limits" },
	{ "embed", cmd_embed, "print the embeddings of texts (pooled, normalized)" },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* No options of its own: --help and --version, then the command. */
static const mg_settings_spec_t main_spec = {
	.prog = "margin-worker",
	.synopsis = "COMMAND [OPTIONS]\n",
	.version = MARGIN_VERSION,
	.no_config = true,
	.commands = commands,
	.n_commands = N_COMMANDS,
};

/* OpenBLAS chooses its kernels when the library is loaded (a constructor
 * reads OPENBLAS_CORETYPE, else cpuid), before main: an OpenBLAS older
 * than the CPU falls back to a generic SSE core several times slower. For
 * the commands that call it (bench calibrates with sgemm; --blas runs the
 * model on it), restart this program once with the core type that matches
 * the CPU (calib_blas_core_fix). MARGIN_OPENBLAS_RESTARTED marks the
 * restarted process so that it never loops. */
static void blas_core_check(int argc, char **argv)
{
	bool uses = strcmp(argv[1], "bench") == 0;
	for (int i = 2; i < argc && !uses; i++)
		uses = strcmp(argv[i], "--blas") == 0;
	if (!uses)
		return;
	const char *core = openblas_get_corename(), *forced = getenv("OPENBLAS_CORETYPE");
	bool avx512 = __builtin_cpu_supports("avx512f"), avx2 = __builtin_cpu_supports("avx2");
	const char *fix = calib_blas_core_fix(core, avx512, avx2, forced, getenv("MARGIN_OPENBLAS_CORETYPE"));
	if (fix == NULL)
		return;
	const char *cpu = avx512 ? "AVX-512" : "AVX2";
	const char *what = calib_blas_core_is_generic(core) ? "a generic fallback" : "an older family's core";
	if (getenv("MARGIN_OPENBLAS_RESTARTED") != NULL) {
		mg_log(MG_LOG_WARN, "openblas", "core %s is still %s after a restart: this OpenBLAS "
		       "lacks the %s kernels (built without DYNAMIC_ARCH?) OPENBLAS_CORETYPE=%s", core, what, cpu,
		       forced ? forced : "");
		return;
	}
	if (forced != NULL && forced[0] != '\0')
		mg_log(MG_LOG_INFO, "openblas", "core %s is %s on an %s CPU: overriding the "
		       "OPENBLAS_CORETYPE set in the environment (MARGIN_OPENBLAS_CORETYPE=keep keeps it) "
		       "and restarting with the matching core OPENBLAS_CORETYPE=%s", core, what, cpu, fix);
	else
		mg_log(MG_LOG_INFO, "openblas", "core %s is %s on an %s CPU: restarting with the "
		       "matching core OPENBLAS_CORETYPE=%s", core, what, cpu, fix);
	if (setenv("OPENBLAS_CORETYPE", fix, 1) < 0 || setenv("MARGIN_OPENBLAS_RESTARTED", core, 1) < 0)
		return;
	fflush(NULL);
	execv("/proc/self/exe", argv);
	mg_log(MG_LOG_WARN, "openblas", "cannot restart, going on with the generic core core=%s err=\"%s\"", core,
	       strerror(errno));
}

int main(int argc, char **argv)
{
	if (mg_log_init_from_env() < 0)
		fprintf(stderr, "margin-worker: ignoring bad MARGIN_LOG_LEVEL\n");
	const mg_settings_spec_t *spec = &main_spec;
	mg_config_t *cfg = mg_config_new();
	int next = argc, r = cfg == NULL ? -ENOMEM : mg_settings_parse_head_into(spec, cfg, argc, argv, NULL, &next);
	mg_config_destroy(&cfg);
	if (r == 0 && next >= argc) {
		mg_settings_usage(spec, stderr);
		r = -EINVAL;
	}
	if (r != 0)
		return r == 1 ? 0 : r == -EINVAL ? 2 : 1;
	argc -= next - 1;	/* argv[1] is the command from here on */
	argv += next - 1;
	blas_core_check(argc, argv);
	const mg_settings_command_t *cmd = mg_settings_command_find(spec, argv[1]);
	if (cmd != NULL)
		return cmd->fn(argc - 1, argv + 1);
	fprintf(stderr, "margin-worker: unknown command '%s'\n", argv[1]);
	mg_settings_usage(spec, stderr);
	return 2;
}
