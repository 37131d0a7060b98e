/* sv-jepsen-godown: the power nemesis's "power off" (jepsen/run, nemesis power). Shuts down the
 * file systems mounted at the given directories at once, without flushing anything: no dirty page
 * and no journal transaction of theirs reaches the device afterwards, and every later operation
 * on them fails. What their devices hold is what a power cut would have left; the harness then
 * unmounts them and mounts the devices' images again (the journal is replayed).
 * FS_IOC_SHUTDOWN with FS_SHUTDOWN_FLAGS_NOLOGFLUSH (ext4 and XFS: xfstests' "godown -f").
 * Only the root of a file system on a loop device is accepted: a directory that is not a mount
 * point (a disk that is not mounted) would name the file system it sits on, e.g. the host's root.
 * Nothing is shut down unless every directory passes.
 * Exit 0 when every one was shut down, 1 when one was not (each failure named), 2 on usage. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef FS_IOC_SHUTDOWN
#define FS_IOC_SHUTDOWN _IOR('X', 125, uint32_t)
#endif

enum {
    GODOWN_FLAGS_NOLOGFLUSH = 0x2, /* FS_SHUTDOWN_FLAGS_NOLOGFLUSH: neither data nor the log */
    GODOWN_DIRS_MAX = 64,
    LOOP_MAJOR = 7, /* block major of /dev/loopN */
};

/* 0 if fd is the root directory of a file system on a loop device; else a message in why. */
static int check_loop_root(int fd, const char **why)
{
    struct stat st, up;
    int pfd = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0 || fstat(fd, &st) < 0 || fstat(pfd, &up) < 0) {
        *why = strerror(errno);
        if (pfd >= 0)
            close(pfd);
        return -1;
    }
    close(pfd);
    if (st.st_dev == up.st_dev) {
        *why = "not a mount point (nothing mounted there): refused";
        return -1;
    }
    if (major(st.st_dev) != LOOP_MAJOR) {
        *why = "not a file system on a loop device: refused";
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc - 1 > GODOWN_DIRS_MAX || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "--help") == 0) {
        fprintf(stderr,
                "usage: sv-jepsen-godown MOUNTPOINT... (at most %d): shut the file "
                "systems down at once, flushing nothing\n",
                GODOWN_DIRS_MAX);
        return 2;
    }
    int n = argc - 1, fds[GODOWN_DIRS_MAX], rc = 0;
    /* Open and check them all first, so that the shutdowns follow each other without a gap. */
    for (int i = 0; i < n; i++) {
        const char *why = NULL;
        fds[i] = open(argv[i + 1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fds[i] < 0)
            why = strerror(errno);
        else if (check_loop_root(fds[i], &why) != 0) {
            close(fds[i]);
            fds[i] = -1;
        }
        if (why) {
            fprintf(stderr, "sv-jepsen-godown: %s: %s\n", argv[i + 1], why);
            rc = 1;
        }
    }
    if (rc) {
        for (int i = 0; i < n; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        return rc;
    }
    int err[GODOWN_DIRS_MAX];
    for (int i = 0; i < n; i++) {
        uint32_t flags = GODOWN_FLAGS_NOLOGFLUSH;
        err[i] = fds[i] >= 0 && ioctl(fds[i], FS_IOC_SHUTDOWN, &flags) < 0 ? errno : 0;
    }
    for (int i = 0; i < n; i++) {
        if (fds[i] < 0)
            continue;
        if (err[i]) {
            fprintf(stderr, "sv-jepsen-godown: shutdown of %s: %s\n", argv[i + 1],
                    strerror(err[i]));
            rc = 1;
        }
        close(fds[i]);
    }
    return rc;
}
