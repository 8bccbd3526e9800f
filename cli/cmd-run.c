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
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "imgfmt.h"
#include "run.h"

/* The runner opens --disk images self-contained, so one that names a
 * backing file fails there; say here, where the options are known, how
 * to allow it.  Other failures are the runner's to report. */
static int check_disks(const struct run_args *a)
{
	for (int i = 0; i < a->mc.nr_disks; i++) {
		struct imgfmt_open_opts o = {
			.flags = IMGFMT_OPEN_SELF_CONTAINED,
			.format = a->disk_format[i],
		};
		imgfmt_image *img;

		if (a->disk_backing[i])
			continue;
		int r = imgfmt__open(a->disks[i], &o, &img);
		if (r == 0)
			imgfmt__close(img);
		if (r == -EPERM) {
			cli__error("run: %s; --disk %s,backing=on lets the "
				   "guest read it", imgfmt__error(),
				   a->disks[i]);
			return EXIT_FAIL;
		}
	}
	return 0;
}

int cmd_run(int argc, char **argv)
{
	struct run_args a;
	char *path = NULL;
	struct stat st;
	int rc;

	memset(&a, 0, sizeof(a));
	rc = run_args__parse(argc, argv, &a);
	if (rc == 0)
		rc = check_disks(&a);
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
