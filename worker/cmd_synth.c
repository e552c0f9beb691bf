/* margin-worker synth: write a synthetic preset as a GGUF file that
 * llama.cpp-style readers load (standard key and tensor names, an SPM
 * tokenizer in tokenizer.ggml.*). The same weights as --arch PRESET. */
#include "cmds.h"
#include "quant.h"
#include "synth.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: margin-worker synth --arch PRESET [--layers K] [--type T] -o FILE.gguf\n"
		"       margin-worker synth --list\n\n"
		"Write the synthetic model PRESET (deterministic pseudo-random weights, the\n"
		"same as --arch PRESET elsewhere) as a GGUF file.\n\n"
		"  --arch PRESET   the preset (--list shows them)\n"
		"  --layers K      only K transformer blocks\n"
		"  --type T        f32 (default), f16, bf16, or a quantization mix as\n"
		"                  llama-quantize names it: each tensor gets the type\n"
		"                  llama.cpp gives it in that mix (q4_k_m: Q4_K, Q6_K for\n"
		"                  the output and some attn_v/ffn_down, fallbacks for rows\n"
		"                  that are not whole blocks); norms and biases stay f32.\n"
		"                  Mixes:");
	int col = 25;
	for (size_t i = 0; quant_mix_name(i) != NULL; i++) {
		int len = (int)strlen(quant_mix_name(i));
		if (col + len + 2 > 78) {
			fputs("\n                 ", f);
			col = 17;
		}
		col += fprintf(f, " %s%s", quant_mix_name(i), quant_mix_name(i + 1) != NULL ? "," : "");
	}
	fprintf(f, "\n"
		"  -o FILE         output path (written to a temporary file, then renamed);\n"
		"                  the weights are made while the file is written, so a 7B\n"
		"                  model needs a few MiB of memory\n"
		"  --list          the presets and their shapes\n");
}

static void list(void)
{
	for (size_t i = 0; i < synth_n_presets(); i++) {
		const synth_preset_t *p = synth_preset_at(i);
		printf("%-17s %6.1fM params  %s\n", p->name, (double)model_config_n_params(&p->cfg) / 1e6,
		       p->about);
	}
}

int cmd_synth(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "arch", required_argument, NULL, 'a' },
		{ "layers", required_argument, NULL, 'L' },
		{ "type", required_argument, NULL, 'T' },
		{ "output", required_argument, NULL, 'o' },
		{ "list", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *arch = NULL, *out = NULL;
	long layers = 0;
	const char *type = "f32";
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': arch = optarg; break;
		case 'o': out = optarg; break;
		case 'l': list(); return 0;
		case 'h': usage(stdout); return 0;
		case 'L': {
			char *end;
			errno = 0;
			layers = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || layers < 1 || layers > 1024) {
				fprintf(stderr, "margin-worker synth: bad --layers '%s' (1..1024)\n", optarg);
				return 2;
			}
			break;
		}
		case 'T': {
			quant_mix_t m;
			if (quant_mix_parse(optarg, &m) < 0) {
				fprintf(stderr, "margin-worker synth: bad --type '%s' (one of:", optarg);
				for (size_t i = 0; quant_mix_name(i) != NULL; i++)
					fprintf(stderr, " %s", quant_mix_name(i));
				fprintf(stderr, ")\n");
				return 2;
			}
			type = m.name;
			break;
		}
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "margin-worker synth: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (arch == NULL || out == NULL) {
		fprintf(stderr, "margin-worker synth: give --arch PRESET and -o FILE.gguf\n");
		usage(stderr);
		return 2;
	}
	if (synth_preset_find(arch) == NULL) {
		fprintf(stderr, "margin-worker synth: unknown preset '%s'; presets:\n", arch);
		for (size_t i = 0; i < synth_n_presets(); i++)
			fprintf(stderr, "  %s\n", synth_preset_at(i)->name);
		return 2;
	}
	char err[512];
	int rc = synth_write_gguf_mix(arch, (int)layers, type, out, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "margin-worker synth: %s\n", err);
		return 1;
	}
	return 0;
}
