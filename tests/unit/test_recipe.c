/*
 * test_recipe.c - builder/recipe.c: recipe.toml into struct recipe.
 *
 * Good recipes must fill every field; bad ones must be refused with the
 * exact file:line:col of the offending key or value and a message that
 * says what to write instead.  The example recipes under recipes/ must
 * load too.
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "builder/recipe.h"
#include "fixture-run.h"

static char dir[64], path[128];

static void setup(void)
{
	strcpy(dir, "/tmp/test_recipe.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/recipe.toml", dir);
}

static int rm_one(const char *p, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(p);
}

static void teardown(void)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Create dir/rel (and its parent folder) as a file, or a directory if
 * rel ends in '/'. */
static void make_local(const char *rel)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	char *slash = strchr(p + strlen(dir) + 1, '/');
	if (slash && slash[1]) {
		*slash = 0;
		mkdir(p, 0755);
		*slash = '/';
	}
	if (p[strlen(p) - 1] == '/') {
		ck_assert_int_eq(mkdir(p, 0755), 0);
		return;
	}
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
}

static void write_recipe(const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

static void load_ok(const char *text, struct recipe *r)
{
	write_recipe(text);
	int rc = recipe__load(path, r);
	ck_assert_msg(rc == 0, "load failed: %s", recipe__error());
}

/* The load must fail at line:col with `want` in the message. */
static void load_bad(const char *text, int line, int col, const char *want)
{
	struct recipe r;
	char pos[200];

	write_recipe(text);
	int rc = recipe__load(path, &r);
	ck_assert_msg(rc == -EINVAL, "want -EINVAL (%s), got %d", want, rc);
	snprintf(pos, sizeof(pos), "%s:%d:%d: ", path, line, col);
	ck_assert_msg(strncmp(recipe__error(), pos, strlen(pos)) == 0,
		      "want position %d:%d, got \"%s\"", line, col,
		      recipe__error());
	ck_assert_msg(strstr(recipe__error(), want),
		      "want \"%s\" in \"%s\"", want, recipe__error());
	/* A failed load leaves nothing to free. */
	ck_assert_ptr_null(r.name);
	ck_assert_ptr_null(r.files);
}

#define HEAD "[appliance]\nname = \"demo\"\nversion = \"1.0\"\n"
#define SHA64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

START_TEST(full_recipe)
{
	struct recipe r;
	make_local("www/index.html");
	load_ok("packages = [\"nginx\", \"openssh-server\"]\n"
		"[appliance]\n"
		"name = \"web-demo\"\n"
		"version = \"1.2.3\"\n"
		"description = \"a small web server\"\n"
		"[base]\n"
		"type = \"debian\"\n"
		"suite = \"bookworm\"\n"
		"variant = \"minbase\"\n"
		"mirror = \"http://deb.debian.org/debian\"\n"
		"[[files]]\n"
		"path = \"/etc/motd\"\n"
		"content = \"hello\\n\"\n"
		"mode = 0o640\n"
		"owner = \"root\"\n"
		"group = \"adm\"\n"
		"[[files]]\n"
		"path = \"/var/www/index.html\"\n"
		"source = \"www/index.html\"\n"
		"mode = \"0644\"\n"
		"[[users]]\n"
		"name = \"admin\"\n"
		"uid = 1000\n"
		"groups = [\"sudo\", \"web\"]\n"
		"password = \"$6$salt$hash\"\n"
		"ssh_keys = [\"ssh-ed25519 AAAAC3Nza admin@host\"]\n"
		"[[groups]]\n"
		"name = \"web\"\n"
		"[system]\n"
		"hostname = \"web1\"\n"
		"timezone = \"Europe/Paris\"\n"
		"locale = \"en_US.UTF-8\"\n"
		"services = [\"nginx.service\"]\n"
		"[commands]\n"
		"build = [\"echo built > /etc/built\"]\n"
		"first_boot = [\"ssh-keygen -A\"]\n"
		"[kernel]\n"
		"source = \"debian\"\n"
		"cmdline = \"quiet\"\n"
		"[disk]\n"
		"size = \"2G\"\n"
		"filesystem = \"ext4\"\n"
		"gpt = true\n"
		"[vm]\n"
		"memory = \"1.5G\"\n"
		"cpus = 2\n"
		"cmdline = \"loglevel=3\"\n"
		"console = \"serial\"\n"
		"[[vm.ports]]\n"
		"host = 8080\n"
		"guest = 80\n"
		"[[vm.ports]]\n"
		"host = 5353\n"
		"guest = 53\n"
		"proto = \"udp\"\n", &r);
	ck_assert_str_eq(r.name, "web-demo");
	ck_assert_str_eq(r.version, "1.2.3");
	ck_assert_str_eq(r.description, "a small web server");
	ck_assert_int_eq(r.base.type, RECIPE_BASE_DEBIAN);
	ck_assert_str_eq(r.base.suite, "bookworm");
	ck_assert_str_eq(r.base.mirror, "http://deb.debian.org/debian");
	ck_assert_uint_eq(r.n_packages, 2);
	ck_assert_str_eq(r.packages[1], "openssh-server");
	ck_assert_uint_eq(r.n_files, 2);
	ck_assert_str_eq(r.files[0].path, "/etc/motd");
	ck_assert_str_eq(r.files[0].content, "hello\n");
	ck_assert_uint_eq(r.files[0].content_len, 6);
	ck_assert_int_eq(r.files[0].mode, 0640);
	ck_assert_int_eq(r.files[0].has_mode, 1);
	ck_assert_str_eq(r.files[0].group, "adm");
	ck_assert_ptr_null(r.files[1].content);
	ck_assert_str_eq(r.files[1].source, "www/index.html");
	ck_assert_int_eq(r.files[1].mode, 0644);
	ck_assert_uint_eq(r.n_users, 1);
	ck_assert_int_eq(r.users[0].uid, 1000);
	ck_assert_uint_eq(r.users[0].n_groups, 2);
	ck_assert_str_eq(r.users[0].groups[1], "web");
	ck_assert_str_eq(r.users[0].password, "$6$salt$hash");
	ck_assert_uint_eq(r.users[0].n_ssh_keys, 1);
	ck_assert_ptr_null(r.users[0].shell);
	ck_assert_uint_eq(r.n_groups, 1);
	ck_assert_int_eq(r.groups[0].gid, -1);
	ck_assert_str_eq(r.hostname, "web1");
	ck_assert_str_eq(r.timezone, "Europe/Paris");
	ck_assert_str_eq(r.locale, "en_US.UTF-8");
	ck_assert_uint_eq(r.n_services, 1);
	ck_assert_uint_eq(r.n_build_commands, 1);
	ck_assert_str_eq(r.first_boot_commands[0], "ssh-keygen -A");
	ck_assert_str_eq(r.kernel.source, "debian");
	ck_assert_str_eq(r.kernel.cmdline, "quiet");
	ck_assert_uint_eq(r.disk.size, 2ull << 30);
	ck_assert_int_eq(r.disk.gpt, 1);
	ck_assert_uint_eq(r.vm.memory, 3ull << 29);
	ck_assert_uint_eq(r.vm.cpus, 2);
	ck_assert_str_eq(r.vm.console, "serial");
	ck_assert_uint_eq(r.vm.n_ports, 2);
	ck_assert_uint_eq(r.vm.ports[0].host, 8080);
	ck_assert_uint_eq(r.vm.ports[0].guest, 80);
	ck_assert_ptr_null(r.vm.ports[0].proto);
	ck_assert_str_eq(r.vm.ports[1].proto, "udp");
	char *real = realpath(dir, NULL);
	ck_assert_str_eq(r.dir, real);
	free(real);
	recipe__free(&r);
	recipe__free(&r);       /* harmless twice */
}
END_TEST

START_TEST(minimal_recipe_defaults)
{
	struct recipe r;
	load_ok(HEAD, &r);
	ck_assert_str_eq(r.name, "demo");
	ck_assert_int_eq(r.base.type, RECIPE_BASE_DEBIAN);
	ck_assert_ptr_null(r.base.suite);
	ck_assert_uint_eq(r.n_packages, 0);
	ck_assert_uint_eq(r.disk.size, 0);
	ck_assert_uint_eq(r.vm.memory, 0);
	ck_assert_ptr_null(r.hostname);
	recipe__free(&r);

	load_ok(HEAD "[base]\ntype = \"busybox\"\n[[users]]\nname = \"u\"\n"
		"[disk]\nsize = 67108864\n[vm]\nmemory = \"256MiB\"\n", &r);
	ck_assert_int_eq(r.base.type, RECIPE_BASE_BUSYBOX);
	ck_assert_int_eq(r.users[0].uid, -1);
	ck_assert_uint_eq(r.disk.size, 64ull << 20);
	ck_assert_uint_eq(r.vm.memory, 256ull << 20);
	recipe__free(&r);

	load_ok(HEAD "[base]\ntype = \"tarball\"\n"
		"source = \"https://example.org/root.tar.gz\"\n"
		"sha256 = \"" SHA64 "\"\n", &r);
	ck_assert_int_eq(r.base.type, RECIPE_BASE_TARBALL);
	ck_assert_str_eq(r.base.sha256, SHA64);
	recipe__free(&r);
}
END_TEST

START_TEST(unknown_keys_suggest)
{
	load_bad(HEAD "[vm]\nmemroy = \"1G\"\n", 5, 1,
		 "unknown key 'memroy' in vm (did you mean 'memory'?)");
	load_bad(HEAD "[dsk]\nsize = \"1G\"\n", 4, 2,
		 "unknown key 'dsk' in the top level (did you mean 'disk'?)");
	load_bad(HEAD "[[files]]\npath = \"/a\"\ncontent = \"\"\n"
		 "  owmer = \"x\"\n", 7, 3, "did you mean 'owner'?");
	load_bad(HEAD "[vm]\ncompletely_unrelated = 1\n", 5, 1,
		 "unknown key 'completely_unrelated' in vm");
	/* no suggestion when nothing is close */
	write_recipe(HEAD "[vm]\nzzzzzzzz = 1\n");
	struct recipe r;
	ck_assert_int_eq(recipe__load(path, &r), -EINVAL);
	ck_assert_ptr_null(strstr(recipe__error(), "did you mean"));
	load_bad(HEAD "[base]\ntype = \"debain\"\n", 5, 8,
		 "did you mean \"debian\"?");
}
END_TEST

START_TEST(wrong_types)
{
	load_bad(HEAD "[vm]\ncpus = \"2\"\n", 5, 8,
		 "vm.cpus: expected an integer, got a string");
	load_bad(HEAD "[disk]\ngpt = 1\n", 5, 7,
		 "disk.gpt: expected true or false, got an integer");
	load_bad("packages = \"nginx\"\n" HEAD, 1, 12,
		 "packages: expected an array of strings");
	load_bad("packages = [\"a\", 2]\n" HEAD, 1, 18,
		 "packages[2]: expected a string, got an integer");
	load_bad("vm = 3\n" HEAD, 1, 6, "vm: expected a table");
	load_bad("files = 3\n" HEAD, 1, 9, "files: expected an array of tables");
	load_bad(HEAD "[disk]\nsize = 1.5\n", 5, 8, "got a float");
	load_bad(HEAD "[appliance.x]\n", 4, 12, "unknown key 'x' in appliance");
}
END_TEST

START_TEST(missing_required)
{
	load_bad("[appliance]\nname = \"demo\"\n", 1, 1,
		 "appliance: missing required key 'version'");
	load_bad("[vm]\ncpus = 1\n", 1, 1, "missing required table [appliance]");
	load_bad(HEAD "[[files]]\ncontent = \"x\"\n", 4, 1,
		 "files[1]: missing required key 'path'");
	load_bad(HEAD "[[vm.ports]]\nhost = 1\nguest = 2\n[[vm.ports]]\n"
		 "host = 3\n", 7, 1, "vm.ports[2]: missing required key 'guest'");
	load_bad(HEAD "[base]\nsuite = \"bookworm\"\n", 4, 1,
		 "base: missing required key 'type'");
	load_bad("[appliance]\nname = \"\"\nversion = \"1\"\n", 2, 8,
		 "must not be empty");
}
END_TEST

START_TEST(bad_values)
{
	load_bad(HEAD "[vm]\nmemory = \"12Q\"\n", 5, 10,
		 "vm.memory: size \"12Q\" has an unknown unit");
	load_bad(HEAD "[vm]\nmemory = \"1M\"\n", 5, 10,
		 "size must be between 16M and 1T");
	load_bad(HEAD "[vm]\nmemory = \"0.1\"\n", 5, 10, "whole number");
	load_bad(HEAD "[vm]\nmemory = \"99999999999999999999G\"\n", 5, 10,
		 "too large");
	load_bad(HEAD "[vm]\ncpus = 0\n", 5, 8, "out of range (1 to 255)");
	load_bad(HEAD "[[vm.ports]]\nhost = 70000\nguest = 1\n", 5, 8,
		 "vm.ports[1].host: 70000 is out of range");
	load_bad(HEAD "[vm]\nconsole = \"vga\"\n", 5, 11,
		 "\"vga\" is not one of \"serial\", \"virtio\", \"none\"");
	load_bad("[appliance]\nname = \"Demo App\"\nversion = \"1\"\n", 2, 8,
		 "appliance.name: \"Demo App\" must start with a lower-case");
	load_bad(HEAD "[[files]]\npath = \"/etc/x\"\ncontent = \"\"\n"
		 "mode = 644\n", 7, 8, "write modes in octal: 0o1204");
	load_bad(HEAD "[[files]]\npath = \"/etc/x\"\ncontent = \"\"\n"
		 "mode = \"0999\"\n", 7, 8, "not an octal mode");
	load_bad(HEAD "[[files]]\npath = \"etc/x\"\ncontent = \"\"\n", 5, 8,
		 "must be an absolute path");
	load_bad(HEAD "[[files]]\npath = \"/etc/x\"\n"
		 "source = \"../../etc/shadow\"\n", 6, 10,
		 "must not contain '..'");
	load_bad(HEAD "[[files]]\npath = \"/etc/x\"\ncontent = \"a\"\n"
		 "source = \"b\"\n", 7, 10, "exactly one of content");
	load_bad(HEAD "[[files]]\npath = \"/etc/x\"\nmode = \"0644\"\n"
		 "source = \"\"\n", 7, 10, "must not be empty");
	load_bad(HEAD "[[files]]\npath = \"/etc/x\"\n", 4, 1,
		 "exactly one of content");
	load_bad(HEAD "[[users]]\nname = \"bob\"\npassword = \"hunter2\"\n",
		 6, 12, "plain-text passwords are refused");
	load_bad(HEAD "[[users]]\nname = \"bob\"\nssh_keys = [\"hello\"]\n",
		 6, 13, "users[1].ssh_keys[1]: \"hello\" does not look like an "
		 "SSH public key");
	load_bad(HEAD "[[users]]\nname = \"bob\"\n[[users]]\nname = \"bob\"\n",
		 7, 8, "user 'bob' is already defined by users[1]");
	load_bad(HEAD "[[files]]\npath = \"/a\"\ncontent = \"\"\n[[files]]\n"
		 "path = \"/a\"\ncontent = \"\"\n", 8, 8,
		 "files[2].path: /a is already written by files[1]");
	load_bad(HEAD "[[groups]]\nname = \"ops\"\n[[groups]]\n"
		 "name = \"ops\"\n", 7, 8,
		 "groups[2].name: group 'ops' is already defined by "
		 "groups[1]");
	load_bad(HEAD "[system]\nhostname = \"-bad\"\n", 5, 12,
		 "label starting with '-'");
	load_bad(HEAD "[system]\ntimezone = \"../../etc/passwd\"\n", 5, 12,
		 "zoneinfo name");
	load_bad(HEAD "[base]\ntype = \"busybox\"\nsuite = \"sid\"\n", 6, 1,
		 "base.suite: only applies to type = \"debian\"");
	load_bad(HEAD "[base]\ntype = \"tarball\"\n", 4, 1,
		 "needs source");
	load_bad(HEAD "[base]\ntype = \"tarball\"\nsource = \"ftp://x/y\"\n",
		 6, 10, "http(s) URL");
	/* A downloaded base is pinned by its digest. */
	load_bad(HEAD "[base]\ntype = \"tarball\"\n"
		 "source = \"https://example.org/r.tar\"\n", 6, 1,
		 "base.source: a URL needs sha256");
	load_bad(HEAD "[base]\ntype = \"tarball\"\n"
		 "source = \"https://example.org/r.tar\"\nsha256 = \"ABC\"\n",
		 7, 10, "64 lower-case hex digits");
	load_bad(HEAD "[base]\ntype = \"busybox\"\nsha256 = \"" SHA64 "\"\n",
		 6, 1, "base.sha256: only applies to type = \"tarball\"");
	load_bad(HEAD "[[vm.ports]]\nhost = 22\nguest = 22\n[[vm.ports]]\n"
		 "host = 22\nguest = 2222\n", 7, 1,
		 "host port 22/tcp is already forwarded");
	load_bad(HEAD "[vm]\ncmdline = \"a\\nb\"\n", 5, 11, "single line");
	load_bad(HEAD "[kernel]\nsource = \"/boot/vmlinuz\"\n", 5, 10,
		 "relative to the recipe's directory");
}
END_TEST

START_TEST(local_paths_must_exist)
{
	struct recipe r;
	load_bad(HEAD "[[files]]\npath = \"/a\"\nsource = \"www/x.html\"\n",
		 6, 10, "files[1].source: www/x.html: No such file");
	make_local("www/");
	load_bad(HEAD "[[files]]\npath = \"/a\"\nsource = \"www\"\n",
		 6, 10, "not a regular file");
	make_local("www/x.html");
	load_ok(HEAD "[[files]]\npath = \"/a\"\nsource = \"www/x.html\"\n",
		&r);
	recipe__free(&r);

	load_bad(HEAD "[base]\ntype = \"tarball\"\nsource = \"root.tar\"\n",
		 6, 10, "base.source: root.tar: No such file");
	load_bad(HEAD "[kernel]\nsource = \"bzImage\"\n", 5, 10,
		 "kernel.source: bzImage: No such file");
	make_local("bzImage");
	load_bad(HEAD "[kernel]\nsource = \"bzImage\"\nmodules = \"bzImage\"\n",
		 6, 11, "not a directory");
	load_bad(HEAD "[kernel]\nmodules = \"mods\"\n", 5, 1,
		 "only applies with a kernel image path");
	make_local("mods/");
	load_ok(HEAD "[kernel]\nsource = \"bzImage\"\nmodules = \"mods\"\n",
		&r);
	ck_assert_str_eq(r.kernel.modules, "mods");
	recipe__free(&r);
}
END_TEST

/* The example in docs/recipes.md must stay a valid recipe. */
START_TEST(docs_example_loads)
{
	FILE *f = fopen("docs/recipes.md", "r");
	if (!f)
		return;         /* run from elsewhere than the top directory */
	static char doc[1 << 16];
	size_t n = fread(doc, 1, sizeof(doc) - 1, f);
	fclose(f);
	doc[n] = 0;
	char *start = strstr(doc, "```toml\n");
	ck_assert_ptr_nonnull(start);
	start += 8;
	char *end = strstr(start, "```");
	ck_assert_ptr_nonnull(end);
	*end = 0;
	make_local("www/index.html");
	struct recipe r;
	load_ok(start, &r);
	ck_assert_str_eq(r.name, "web-demo");
	ck_assert_uint_eq(r.vm.n_ports, 2);
	recipe__free(&r);
}
END_TEST

START_TEST(syntax_and_file_errors)
{
	/* TOML errors come through with their position. */
	load_bad(HEAD "[vm]\nmemory = 512M\n", 5, 10,
		 "invalid number '512M': invalid digit (strings need quotes)");
	load_bad(HEAD "[appliance]\n", 4, 1, "defined twice");
	load_bad("packages = [\"a\"]\n" HEAD "[base]\ntype = \"debian\"\n"
		 "packages = [\"b\"]\n", 1, 12, "packages: given twice");

	struct recipe r;
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nope.toml", dir);
	ck_assert_int_eq(recipe__load(missing, &r), -ENOENT);
	ck_assert_ptr_nonnull(strstr(recipe__error(), "nope.toml"));
	ck_assert_int_eq(recipe__load(dir, &r), -EINVAL);
	ck_assert_ptr_nonnull(strstr(recipe__error(), "not a regular file"));

	/* Oversized input is refused before parsing. */
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(HEAD "# ", f);
	for (int i = 0; i < (5 << 20) / 64; i++)
		fputs("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", f);
	fclose(f);
	ck_assert_int_eq(recipe__load(path, &r), -EFBIG);
	ck_assert_ptr_nonnull(strstr(recipe__error(), "larger than"));

	/* Binary garbage. */
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fwrite("\xff\xfe\0\0[app", 1, 9, f);
	fclose(f);
	ck_assert_int_eq(recipe__load(path, &r), -EINVAL);
	ck_assert_ptr_nonnull(strstr(recipe__error(), ":1:1: "));
}
END_TEST

START_TEST(example_recipes_load)
{
	glob_t g;
	int rc = glob("recipes/*/recipe.toml", 0, NULL, &g);
	if (rc == GLOB_NOMATCH)
		return;         /* none committed yet */
	ck_assert_int_eq(rc, 0);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		struct recipe r;
		ck_assert_msg(recipe__load(g.gl_pathv[i], &r) == 0, "%s",
			      recipe__error());
		ck_assert_ptr_nonnull(r.name);
		recipe__free(&r);
	}
	globfree(&g);
}
END_TEST

static Suite *recipe_suite(void)
{
	Suite *s = suite_create("recipe");
	TCase *tc = tcase_create("load");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, full_recipe);
	tcase_add_test(tc, minimal_recipe_defaults);
	tcase_add_test(tc, unknown_keys_suggest);
	tcase_add_test(tc, wrong_types);
	tcase_add_test(tc, missing_required);
	tcase_add_test(tc, bad_values);
	tcase_add_test(tc, local_paths_must_exist);
	tcase_add_test(tc, docs_example_loads);
	tcase_add_test(tc, syntax_and_file_errors);
	tcase_add_test(tc, example_recipes_load);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return fx_run_suite(recipe_suite());
}
