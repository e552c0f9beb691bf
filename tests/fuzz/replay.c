/* fuzz_gguf_replay FILE...: runs the fuzz entry point over each file (a
 * saved crash, a corpus, a real model), for builds without libFuzzer.
 * Each input is copied into an exactly-sized heap block so that a
 * sanitizer build catches any read past its end. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0) {
		fprintf(argc < 2 ? stderr : stdout, "usage: fuzz_gguf_replay FILE...\n");
		return argc < 2 ? 2 : 0;
	}
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (f == NULL) {
			fprintf(stderr, "fuzz_gguf_replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		uint8_t *buf = NULL;
		size_t len = 0, cap = 0;
		for (;;) {
			if (len == cap) {
				cap = cap ? cap * 2 : 1 << 16;
				uint8_t *nb = realloc(buf, cap);
				if (nb == NULL) {
					fprintf(stderr, "fuzz_gguf_replay: %s: out of memory\n", argv[i]);
					free(buf);
					fclose(f);
					return 1;
				}
				buf = nb;
			}
			size_t k = fread(buf + len, 1, cap - len, f);
			if (k == 0)
				break;
			len += k;
		}
		int bad = ferror(f);
		fclose(f);
		if (bad) {
			fprintf(stderr, "fuzz_gguf_replay: %s: read error\n", argv[i]);
			free(buf);
			return 1;
		}
		uint8_t *exact = malloc(len ? len : 1);
		if (exact == NULL) {
			free(buf);
			return 1;
		}
		memcpy(exact, buf, len);
		free(buf);
		LLVMFuzzerTestOneInput(exact, len);
		free(exact);
		printf("%s: %zu bytes ok\n", argv[i], len);
	}
	return 0;
}
