/* margin-worker synth: write a synthetic preset as a GGUF file that
 * llama.cpp-style readers load (standard key and tensor names, an SPM
 * tokenizer in tokenizer.ggml.*). The same weights as --arch PRESET. */
#include "cmds.h"
#include "quant.h"
#include "synth.h"
#include "lib/mg_settings.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The quantization mixes, "q4_0, q4_k_m, ...", wrapped for --help. */
static const char *mix_names(void)
{
	static char buf[1024];
	size_t used = 0;
	int col = 30;	/* after "  --type T  ...Mixes:" */
	for (size_t i = 0; quant_mix_name(i) != NULL && used < sizeof(buf); i++) {
		int len = (int)strlen(quant_mix_name(i));
		if (col + len + 2 > 78 && used + 1 < sizeof(buf)) {
			buf[used++] = '\n';
			col = 24;	/* --help indents the help's further lines */
		}
		int w = snprintf(buf + used, sizeof(buf) - used, "%s%s%s", used > 0 && buf[used - 1] == '\n' ? "" : " ",
				 quant_mix_name(i),
				 quant_mix_name(i + 1) != NULL ? "," : "");
		used += w > 0 ? (size_t)w : 0;
		col += w;
	}
	return buf;
}

typedef struct synth_opts {
	const char *arch, *out, *type;	/* borrowed from the config */
	int32_t layers;
	bool list;
} synth_opts_t;

#define SO(field) MG_SETTING_AT(synth_opts_t, field)
static const mg_setting_t synth_settings[] = {
	{ .flag = "arch", .section = "synth", .key = "arch", .arg = "PRESET", .help = "the preset (--list shows them)",
	  SO(arch) },
	{ .flag = "layers", .section = "synth", .key = "layers", .type = MG_SETTING_INT, .lo = 1, .hi = 1024,
	  .arg = "K", .help = "only K transformer blocks", SO(layers) },
	{ .flag = "type", .section = "synth", .key = "type", .def = "f32", .arg = "T",
	  .help = "f32, f16, bf16, or a quantization mix as\n"
		  "llama-quantize names it: each tensor gets the type\n"
		  "llama.cpp gives it in that mix (q4_k_m: Q4_K, Q6_K for\n"
		  "the output and some attn_v/ffn_down, fallbacks for rows\n"
		  "that are not whole blocks); norms and biases stay f32.\n"
		  "Mixes:%s",
	  .help_fill = mix_names, SO(type) },
	{ .flag = "output", .short_flag = 'o', .section = "synth", .key = "output", .arg = "FILE",
	  .help = "output path (written to a temporary file, then renamed);\n"
		  "the weights are made while the file is written, so a 7B\n"
		  "model needs a few MiB of memory",
	  SO(out) },
	{ .flag = "list", .section = "synth", .key = "list", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "the presets and their shapes", SO(list) },
};

static const mg_settings_spec_t synth_spec = {
	.prog = "margin-worker synth",
	.synopsis = "--arch PRESET [--layers K] [--type T] -o FILE.gguf\n"
		    "       margin-worker synth --list\n",
	.intro = "Write the synthetic model PRESET (deterministic pseudo-random weights, the\n"
		 "same as --arch PRESET elsewhere) as a GGUF file.\n",
	.no_config = true,
	.settings = synth_settings,
	.n = sizeof(synth_settings) / sizeof(synth_settings[0]),
};

static void list(void)
{
	for (size_t i = 0; i < synth_n_presets(); i++) {
		const synth_preset_t *p = synth_preset_at(i);
		printf("%-17s %6.1fM params  %s\n", p->name, (double)model_config_n_params(&p->cfg) / 1e6,
		       p->about);
	}
}

/* Writes the preset arch as out: 0; 2 for an unknown preset, 1 when it
 * cannot (said). */
static int synth(const char *arch, int layers, const char *type, const char *out)
{
	if (synth_preset_find(arch) == NULL) {
		fprintf(stderr, "margin-worker synth: unknown preset '%s'; presets:\n", arch);
		for (size_t i = 0; i < synth_n_presets(); i++)
			fprintf(stderr, "  %s\n", synth_preset_at(i)->name);
		return 2;
	}
	char err[512];
	int rc = synth_write_gguf_mix(arch, layers, type, out, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "margin-worker synth: %s\n", err);
		return 1;
	}
	return 0;
}

/* The mix named by --type, or NULL (said). */
static const char *mix_type(const char *type)
{
	quant_mix_t m;
	if (quant_mix_parse(type, &m) == 0)
		return m.name;
	fprintf(stderr, "margin-worker synth: bad --type '%s' (one of:", type);
	for (size_t i = 0; quant_mix_name(i) != NULL; i++)
		fprintf(stderr, " %s", quant_mix_name(i));
	fprintf(stderr, ")\n");
	return NULL;
}

int cmd_synth(int argc, char **argv)
{
	synth_opts_t o = { 0 };
	mg_config_t *cfg = mg_config_new();
	int r = cfg == NULL ? -ENOMEM : mg_settings_parse_into(&synth_spec, cfg, argc, argv, &o);
	const char *type = NULL;
	if (cfg == NULL)
		fprintf(stderr, "margin-worker synth: out of memory\n");
	if (r == 0 && o.list) {
		list();
		r = 1;
	} else if (r == 0 && (type = mix_type(o.type)) == NULL) {
		r = -EINVAL;
	} else if (r == 0 && (o.arch == NULL || o.out == NULL)) {
		fprintf(stderr, "margin-worker synth: give --arch PRESET and -o FILE.gguf\n");
		mg_settings_usage(&synth_spec, stderr);
		r = -EINVAL;
	}
	r = r == 0 ? synth(o.arch, (int)o.layers, type, o.out) : r == 1 ? 0 : r == -EINVAL ? 2 : 1;
	mg_config_destroy(&cfg);
	return r;
}
