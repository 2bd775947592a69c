#include "eol/instruments/select_fd.hpp"

#include <fcntl.h>
#include <sys/select.h>
#include <unistd.h>

namespace eol::instruments {

int fd_below_setsize(int fd) noexcept {
    if (fd >= 0 && fd < FD_SETSIZE) return fd;
    const int low = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (low >= 0 && low < FD_SETSIZE) {
        ::close(fd);
        return low;
    }
    if (low >= 0) ::close(low);
    return -1;
}

}  // namespace eol::instruments
