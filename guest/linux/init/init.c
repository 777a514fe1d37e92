/* init.c: the /init of the microVM integration test's root file system.
 * Built with gcc -static. Prints a marker on the console that the test waits
 * for (on hosts where Linux user space runs), then powers the VM off.
 * It mounts nothing: the kernel has already mounted the root and devtmpfs. */
#include <fcntl.h>
#include <string.h>
#include <sys/reboot.h>
#include <unistd.h>

#define MARKER "CELLA-INIT: user space is running\n"

int main(void)
{
	int fd = open("/dev/console", O_WRONLY | O_NOCTTY);

	if (fd < 0)
		fd = 1;
	if (write(fd, MARKER, strlen(MARKER)) < 0)
		return 1;
	sync();
	reboot(RB_POWER_OFF);
	/* Without ACPI, power-off may return: a reset ends the VM too. */
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}
