# tests/cli/lib-pkg.sh - a package's build directory made by hand (sourced
# after lib.sh), for the suites that need a small signed package and no
# bootable one.
#
#   mkbuild DIR VERSION [DISK_BYTES]
#
# writes DIR/vmlinuz and DIR/initrd.img (random), DIR/disk.avd (a 4 MiB
# AVD holding DISK_BYTES random bytes, default 100000, from virtual
# offset 65536) and DIR/manifest.toml for appliance "tiny" at VERSION,
# ready for `appliance pack DIR`.
mkbuild() {
	mkdir -p "$1"
	head -c 20000 /dev/urandom > "$1/vmlinuz"
	head -c 7000 /dev/urandom > "$1/initrd.img"
	"$APPLIANCE" img create "$1/disk.avd" 4M >/dev/null
	head -c "${3:-100000}" /dev/urandom |
		"$APPLIANCE" img write "$1/disk.avd" 65536 "${3:-100000}"
	cat > "$1/manifest.toml" <<EOT
manifest_version = 1
[appliance]
name = "tiny"
version = "$2"
architecture = "x86_64"
build_time = 1700000000
[vm]
memory = 134217728
cpus = 1
cmdline = "console=ttyS0"
[[files]]
role = "disk"
name = "disk.avd"
format = "avd"
size = $(stat -c %s "$1/disk.avd")
sha256 = "$(sha256sum "$1/disk.avd" | cut -c1-64)"
[[files]]
role = "kernel"
name = "vmlinuz"
size = 20000
sha256 = "$(sha256sum "$1/vmlinuz" | cut -c1-64)"
[[files]]
role = "initrd"
name = "initrd.img"
size = 7000
sha256 = "$(sha256sum "$1/initrd.img" | cut -c1-64)"
EOT
}
