/*
 * test_trust.c - the trust store: where it lives, add / list / find /
 * remove, and what it does with odd files found in the directory.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliances/trust.h"
#include "fixture-run.h"

static char dir[64], user[128], sys_[128];

static void setup(void)
{
	strcpy(dir, "/tmp/test_trust.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	/* The user store does not exist yet: add must create it. */
	snprintf(user, sizeof(user), "%s/user/a/b", dir);
	snprintf(sys_, sizeof(sys_), "%s/system", dir);
	setenv("APPLIANCE_TRUST_DIR", user, 1);
	setenv("APPLIANCE_SYSTEM_TRUST_DIR", sys_, 1);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* A new key pair; its public key saved as dir/NAME. */
static void new_key(const char *name, struct minisign_pubkey *pk,
		    char *path, size_t len)
{
	struct minisign_seckey sk;

	ck_assert_int_eq(minisign__generate(&sk, pk), 0);
	minisign__seckey_wipe(&sk);
	snprintf(path, len, "%s/%s", dir, name);
	ck_assert_int_eq(minisign__pubkey_save(path, pk, NULL, 0), 0);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

START_TEST(store_locations)
{
	char buf[PATH_MAX];

	ck_assert_int_eq(trust__dir(TRUST_USER, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, user);
	ck_assert_int_eq(trust__dir(TRUST_SYSTEM, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, sys_);
	unsetenv("APPLIANCE_TRUST_DIR");
	unsetenv("APPLIANCE_SYSTEM_TRUST_DIR");
	setenv("XDG_CONFIG_HOME", "/xdg", 1);
	setenv("HOME", "/home/u", 1);
	ck_assert_int_eq(trust__dir(TRUST_USER, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/xdg/appliance/trusted");
	setenv("XDG_CONFIG_HOME", "relative", 1);   /* ignored per XDG */
	ck_assert_int_eq(trust__dir(TRUST_USER, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/home/u/.config/appliance/trusted");
	unsetenv("XDG_CONFIG_HOME");
	unsetenv("HOME");
	ck_assert_int_eq(trust__dir(TRUST_USER, buf, sizeof(buf)), -ENOENT);
	ck_assert_int_eq(trust__dir(TRUST_SYSTEM, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/etc/appliance/trusted");
	ck_assert_int_eq(trust__dir(TRUST_SYSTEM, buf, 8), -ENAMETOOLONG);
}
END_TEST

START_TEST(add_list_find_remove)
{
	struct minisign_pubkey a, b;
	struct trust_entry e, *list;
	char pa[128], pb[128], id[MINISIGN_KEYID_HEX], want[256];
	size_t n;
	struct stat st;

	new_key("a.pub", &a, pa, sizeof(pa));
	new_key("b.pub", &b, pb, sizeof(pb));
	ck_assert_int_eq(trust__list(&list, &n), 0);    /* no stores yet */
	ck_assert_uint_eq(n, 0);
	free(list);

	ck_assert_int_eq(trust__find(a.keyid, &e), -ENOKEY);
	minisign__keyid_hex(a.keyid, id);
	ck_assert_ptr_nonnull(strstr(trust__error(), id));

	ck_assert_msg(trust__add(TRUST_USER, pa, &e) == 0, "%s",
		      trust__error());
	snprintf(want, sizeof(want), "%s/%s.pub", user, id);
	ck_assert_str_eq(e.path, want);
	ck_assert_int_eq(stat(want, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0644);
	ck_assert_int_eq(trust__add(TRUST_USER, pa, NULL), 0);  /* again */
	ck_assert_int_eq(trust__add(TRUST_SYSTEM, pb, NULL), 0);

	ck_assert_int_eq(trust__find(a.keyid, &e), 0);
	ck_assert_int_eq(e.scope, TRUST_USER);
	ck_assert_mem_eq(&e.pk, &a, sizeof(a));
	ck_assert_int_eq(trust__find(b.keyid, &e), 0);
	ck_assert_int_eq(e.scope, TRUST_SYSTEM);
	ck_assert_mem_eq(&e.pk, &b, sizeof(b));

	ck_assert_int_eq(trust__list(&list, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(list[0].scope, TRUST_USER);
	ck_assert_str_eq(list[0].keyid, id);
	ck_assert_str_eq(list[0].error, "");
	ck_assert_int_eq(list[1].scope, TRUST_SYSTEM);
	free(list);

	/* b is in the system store only: removing it from the user store
	 * fails and says where it is. */
	minisign__keyid_hex(b.keyid, id);
	ck_assert_int_eq(trust__remove(TRUST_USER, id), -ENOENT);
	ck_assert_ptr_nonnull(strstr(trust__error(), "system"));
	ck_assert_int_eq(trust__remove(TRUST_SYSTEM, id), 1);
	ck_assert_int_eq(trust__find(b.keyid, &e), -ENOKEY);
	/* By file, lower-case id works too. */
	ck_assert_int_eq(trust__remove(TRUST_USER, pa), 1);
	ck_assert_int_eq(trust__find(a.keyid, &e), -ENOKEY);
	ck_assert_int_eq(trust__remove(TRUST_USER, "0123456789abcdef"),
			 -ENOENT);
	ck_assert_int_lt(trust__remove(TRUST_USER, "no-such-file"), 0);
	ck_assert_ptr_nonnull(strstr(trust__error(), "neither a key id"));
}
END_TEST

START_TEST(odd_files_in_the_store)
{
	struct minisign_pubkey a, clash;
	struct trust_entry e, *list;
	char pa[128], pc[128], path[256];
	size_t n;

	new_key("a.pub", &a, pa, sizeof(pa));
	ck_assert_int_eq(trust__add(TRUST_SYSTEM, pa, NULL), 0);
	snprintf(path, sizeof(path), "mkdir -p '%s'", user);
	ck_assert_int_eq(system(path), 0);

	/* A hand-copied key under another name is still found. */
	snprintf(path, sizeof(path), "%s/from-vendor.pub", user);
	ck_assert_int_eq(minisign__pubkey_save(path, &a, "vendor", 0), 0);
	ck_assert_int_eq(trust__find(a.keyid, &e), 0);
	ck_assert_int_eq(e.scope, TRUST_USER);
	ck_assert_str_eq(e.comment, "vendor");

	/* A broken file is listed with its error and never matched. */
	snprintf(path, sizeof(path), "%s/broken.pub", user);
	write_text(path, "untrusted comment: x\nnot base64 at all!\n");
	snprintf(path, sizeof(path), "%s/notes.txt", user);   /* ignored */
	write_text(path, "hello\n");
	ck_assert_int_eq(trust__list(&list, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(strrchr(list[0].path, '/'), "/broken.pub");
	ck_assert_str_ne(list[0].error, "");
	ck_assert_str_eq(list[0].keyid, "");
	free(list);

	/* A different key claiming a trusted key's id cannot be added. */
	new_key("clash.pub", &clash, pc, sizeof(pc));
	memcpy(clash.keyid, a.keyid, sizeof(a.keyid));
	ck_assert_int_eq(minisign__pubkey_save(pc, &clash, NULL, 0), 0);
	ck_assert_int_eq(trust__add(TRUST_USER, pc, NULL), -EEXIST);
	ck_assert_ptr_nonnull(strstr(trust__error(), "different key"));
	/* Removing by that file leaves the real key alone. */
	ck_assert_int_eq(trust__remove(TRUST_USER, pc), -ENOENT);
	ck_assert_int_eq(trust__find(a.keyid, &e), 0);

	/* Adding something that is not a key says so. */
	ck_assert_int_eq(trust__add(TRUST_USER, path, NULL), -EINVAL);
	ck_assert_ptr_nonnull(strstr(trust__error(), "notes.txt"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("trust");
	TCase *tc = tcase_create("trust");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, store_locations);
	tcase_add_test(tc, add_list_find_remove);
	tcase_add_test(tc, odd_files_in_the_store);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
