/*
 * cmd-img-serve.c - `appliance img serve`: export an image over NBD.
 */
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "imgfmt.h"
#include "nbd/server.h"

static struct nbd_server *serving;

static void on_signal(int sig)
{
	(void)sig;
	if (serving)
		nbd_server__stop(serving);
}

int img_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "port", required_argument, NULL, 'p' },
		{ "bind", required_argument, NULL, 'b' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "export-name", required_argument, NULL, 'e' },
		{ "format", required_argument, NULL, 'f' },
		CLI_PKG_TRUST_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct nbd_server_opts so = { 0 };
	struct imgfmt_open_opts oo = { 0 };
	imgfmt_image *img;
	uint64_t port = 0;
	int c, rc = EXIT_OK;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:p:b:re:f:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': so.socket_path = optarg; break;
		case 'p':
			if (cli__parse_u64(optarg, &port) < 0 || port == 0 ||
			    port > 65535)
				return cli__usage("img", "img serve: bad port "
						  "'%s'", optarg);
			so.port = (int)port;
			break;
		case 'b': so.bind_addr = optarg; break;
		case 'r': so.read_only = 1; break;
		case 'e': so.export_name = optarg; break;
		case 'f': oo.format = optarg; break;
		case 'h': fputs(cmd_img_help, stdout); return EXIT_OK;
		default:
			if (cli__img_trust_option(c, optarg))
				break;
			return cli__usage("img", "img serve: bad option");
		}
	}
	if (argc - optind != 1)
		return cli__usage("img", "img serve: expected IMAGE");
	if (!so.socket_path && !so.port)
		return cli__usage("img", "img serve: give --socket PATH or "
				  "--port N");
	if (so.socket_path && so.port)
		return cli__usage("img", "img serve: --socket and --port "
				  "exclude each other");
	if (!so.read_only)
		oo.flags |= IMGFMT_OPEN_RDWR;
	if (cli__img_open(argv[optind], &oo, &img) < 0)
		return EXIT_FAIL;
	if (!so.description)
		so.description = argv[optind];
	if (nbd_server__create(img, &so, &serving) < 0) {
		cli__error("%s", nbd__error());
		imgfmt__close(img);
		return EXIT_FAIL;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);   /* its terminal closing */
	signal(SIGPIPE, SIG_IGN);
	if (so.socket_path)
		fprintf(stderr, "appliance: serving %s%s on nbd+unix:///%s"
			"?socket=%s\n", argv[optind],
			so.read_only ? " read-only" : "",
			so.export_name ? so.export_name : "", so.socket_path);
	else
		fprintf(stderr, "appliance: serving %s%s on nbd://%s:%d/%s\n",
			argv[optind], so.read_only ? " read-only" : "",
			so.bind_addr ? so.bind_addr : "127.0.0.1", so.port,
			so.export_name ? so.export_name : "");
	nbd_server__run(serving);
	if (nbd_server__destroy(serving) < 0) {
		cli__error("%s", nbd__error());
		rc = EXIT_FAIL;
	}
	serving = NULL;
	if (imgfmt__close(img) < 0) {
		cli__error("%s", imgfmt__error());
		rc = EXIT_FAIL;
	}
	return rc;
}
