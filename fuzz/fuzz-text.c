/* fuzz/fuzz-text.c - the text formats that arrive from elsewhere.
 *
 * Input: one selector byte, then the text.  Selector (mod 6): 0 TOML
 * (any recipe or manifest goes through it first), 1 a repository index
 * (downloaded), 2 a minisign public key (trust add), 3 a minisign
 * signature (downloaded with the index and inside every package), 4 an
 * unencrypted minisign secret key, 5 a recipe (`appliance build` of
 * someone else's recipe).  The oracle: no crash, no sanitizer report,
 * no leak, no hang. */
#include "fuzz/fuzz.h"
#include "appliances/minisign.h"
#include "appliances/repo.h"
#include "builder/recipe.h"
#include "builder/toml.h"

#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	switch (data[0] % 6) {
	case 0: {
		struct toml_value *root = NULL;
		char err[256];
		if (toml__parse(text, len, "fuzz.toml", &root, err,
				sizeof err) == 0)
			toml__free(root);
		break;
	}
	case 1: {
		struct repo_index idx;
		memset(&idx, 0, sizeof idx);
		if (repo__index_parse(text, len, &idx) == 0)
			repo__index_free(&idx);
		break;
	}
	case 2: {
		struct minisign_pubkey pk;
		minisign__pubkey_parse(text, len, "fuzz.pub", &pk);
		break;
	}
	case 3: {
		struct minisign_signature sig;
		minisign__sig_parse(text, len, "fuzz.minisig", &sig);
		break;
	}
	case 4: {
		struct minisign_seckey sk;
		if (minisign__seckey_parse(text, len, "fuzz.key", NULL,
					   &sk) == 0)
			minisign__seckey_wipe(&sk);
		break;
	}
	case 5: {
		char path[64];
		int fd = fuzz__file(data + 1, len, path);
		if (fd < 0)
			break;
		struct recipe r;
		memset(&r, 0, sizeof r);
		if (recipe__load(path, &r) == 0)
			recipe__free(&r);
		close(fd);
		break;
	}
	}
	return 0;
}
