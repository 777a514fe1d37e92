/* echo.c: reads lines from the UART and echoes each as "echo: <line>";
 * the line "quit" ends the program with PASS. Polls the UART from ring 3. */
#include "libtest.h"

TEST_PROGRAM("echo");

int main(int argc, char **argv)
{
	char line[256];
	size_t len = 0;
	unsigned lines = 0;

	printf("echo: ready\n");
	for (;;) {
		int c = console_getc();
		if (c < 0) {
			cpu_relax();
			continue;
		}
		if (c != '\r' && c != '\n') {
			if (len < sizeof(line) - 1)
				line[len++] = (char)c;
			continue;
		}
		if (!len)
			continue;
		line[len] = '\0';
		len = 0;
		if (!strcmp(line, "quit"))
			break;
		lines++;
		printf("echo: %s\n", line);
	}
	printf("echo: %u lines\n", lines);
	printf("PASS echo\n");
	return 0;
}
