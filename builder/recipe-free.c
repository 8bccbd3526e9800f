/*
 * recipe-free.c - release a struct recipe.
 *
 * Kept apart from the TOML loader (recipe.c) so that the build pipeline and
 * its tests, which fill recipes in C, own the struct's lifetime rules.
 */
#include <stdlib.h>
#include <string.h>

#include "builder/recipe.h"

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void recipe__free(struct recipe *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->version);
	free(r->description);
	free(r->base.suite);
	free(r->base.variant);
	free(r->base.mirror);
	free(r->base.source);
	free(r->base.sha256);
	free_strv(r->packages, r->n_packages);
	for (size_t i = 0; i < r->n_files; i++) {
		free(r->files[i].path);
		free(r->files[i].content);
		free(r->files[i].source);
		free(r->files[i].owner);
		free(r->files[i].group);
	}
	free(r->files);
	for (size_t i = 0; i < r->n_users; i++) {
		struct recipe_user *u = &r->users[i];
		free(u->name);
		free_strv(u->groups, u->n_groups);
		free(u->password);
		free(u->shell);
		free(u->home);
		free_strv(u->ssh_keys, u->n_ssh_keys);
	}
	free(r->users);
	for (size_t i = 0; i < r->n_groups; i++)
		free(r->groups[i].name);
	free(r->groups);
	free(r->hostname);
	free(r->timezone);
	free(r->locale);
	free_strv(r->services, r->n_services);
	free_strv(r->build_commands, r->n_build_commands);
	free_strv(r->first_boot_commands, r->n_first_boot_commands);
	free(r->kernel.source);
	free(r->kernel.modules);
	free(r->kernel.cmdline);
	free(r->disk.filesystem);
	free(r->vm.cmdline);
	free(r->vm.console);
	for (size_t i = 0; i < r->vm.n_ports; i++)
		free(r->vm.ports[i].proto);
	free(r->vm.ports);
	free(r->dir);
	memset(r, 0, sizeof(*r));
}
