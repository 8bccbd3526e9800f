/*
 * cmd-run.c - `appliance run`, the front end: check the options, pull a
 * URL or NAME[:VERSION] into the cache, then exec the runner program
 * appliance-run (cli/run-helper/run.c) on a local file.
 *
 * Pulling needs libcurl and the repository code; booting does not.  The
 * exec drops this program's mappings, so the process that lives as long
 * as the VM holds only what the runner links (see run.c for why that
 * matters).  Options are parsed here too (cli/run-args.c) so that usage
 * errors and --help come from the command the user typed, and the pull
 * sees --key and --insecure.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "run.h"

int cmd_run(int argc, char **argv)
{
	struct run_args a;
	char *path = NULL;
	struct stat st;
	int rc;

	memset(&a, 0, sizeof(a));
	rc = run_args__parse(argc, argv, &a);
	run_args__free(&a);
	if (rc != 0)
		return rc < 0 ? EXIT_OK : rc;
	if (a.appliance && !a.check_kvm && !a.mc.kernel && !a.mc.nr_disks &&
	    !(stat(a.appliance, &st) == 0 && S_ISREG(st.st_mode))) {
		if (cli__pull(a.appliance, a.key, a.insecure, &path) < 0)
			return EXIT_FAIL;
		/* getopt_long has moved the operand after the options, so the
		 * runner parses this argv the same way. */
		argv[a.appliance_index] = path;
	}
	rc = cli__exec_helper("appliance-run", NULL, argc, argv);
	free(path);
	return rc;
}
