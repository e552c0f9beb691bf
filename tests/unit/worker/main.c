/* CUnit suites of the worker area. Each test_<module>.c defines
 * <module>_tests[]; a suite missing from the build fails the link. */
#include "cu_main.h"

#define SUITE(x) extern const cu_test_t x##_tests[];
SUITE(gguf) SUITE(quant) SUITE(tok) SUITE(chat) SUITE(ops) SUITE(model) SUITE(sampler)
SUITE(synth) SUITE(engine) SUITE(calib) SUITE(serve) SUITE(qmm) SUITE(embed)
#undef SUITE

static const cu_suite_t suites[] = {
	{ "gguf", gguf_tests, NULL, NULL },
	{ "quant", quant_tests, NULL, NULL },
	{ "tok", tok_tests, NULL, NULL },
	{ "chat", chat_tests, NULL, NULL },
	{ "ops", ops_tests, NULL, NULL },
	{ "model", model_tests, NULL, NULL },
	{ "sampler", sampler_tests, NULL, NULL },
	{ "synth", synth_tests, NULL, NULL },
	{ "engine", engine_tests, NULL, NULL },
	{ "calib", calib_tests, NULL, NULL },
	{ "serve", serve_tests, NULL, NULL },
	{ "qmm", qmm_tests, NULL, NULL },
	{ "embed", embed_tests, NULL, NULL },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_main(argc, argv, suites);
}
