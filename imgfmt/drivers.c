/*
 * drivers.c - the list of format drivers, in probe order.
 *
 * Detection asks every driver to bid (driver.h); order only breaks ties.
 * raw is last: it bids on anything, so it is what an unrecognised file is.
 */
#include "driver.h"

extern const struct imgfmt_driver imgfmt_avd_driver;
extern const struct imgfmt_driver imgfmt_qcow2_driver;

extern const struct imgfmt_driver imgfmt_vhd_driver, imgfmt_vmdk_driver;

const struct imgfmt_driver *const imgfmt_drivers[] = {
	&imgfmt_avd_driver,
	&imgfmt_qcow2_driver,
	&imgfmt_vmdk_driver,
	&imgfmt_vhd_driver,
	&imgfmt_raw_driver,
	NULL,
};
