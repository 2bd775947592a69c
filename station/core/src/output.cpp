#include "eol/station/output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "eol/station/errors.hpp"

namespace eol::station {

void write_file_atomically(const std::filesystem::path& file, std::string_view text) {
    const std::filesystem::path dir = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
    std::string tmpl = (dir / ("." + file.filename().string() + ".tmp-XXXXXX")).string();
    const int fd = ::mkstemp(tmpl.data());
    if (fd < 0) throw UsageError(fmt::format("{}: cannot write: {}", file.string(), std::strerror(errno)));
    auto fail = [&](const char* what) {
        const int err = errno;
        ::close(fd);
        ::unlink(tmpl.c_str());
        throw UsageError(fmt::format("{}: {}: {} (nothing written)", file.string(), what, std::strerror(err)));
    };
    std::size_t done = 0;
    while (done < text.size()) {
        const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("write failed");
        }
        done += static_cast<std::size_t>(n);
    }
    if (::fchmod(fd, 0644) != 0) fail("cannot set permissions");
    if (::fsync(fd) != 0) fail("write failed");
    if (::close(fd) != 0) {
        const int err = errno;
        ::unlink(tmpl.c_str());
        throw UsageError(fmt::format("{}: write failed: {} (nothing written)", file.string(), std::strerror(err)));
    }
    if (::rename(tmpl.c_str(), file.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmpl.c_str());
        throw UsageError(fmt::format("{}: cannot write: {} (nothing written)", file.string(), std::strerror(err)));
    }
}

void write_stdout(std::string_view text) {
    errno = 0;
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
        throw UsageError(fmt::format("writing standard output failed: {}", errno ? std::strerror(errno) : "write error"));
}

std::optional<std::string> finish_stdout() {
    errno = 0;
    std::cout.flush();
    const bool cout_bad = !std::cout;
    if (std::fflush(stdout) != 0 || std::ferror(stdout) || cout_bad)
        return std::string(errno ? std::strerror(errno) : "write error");
    return std::nullopt;
}

}  // namespace eol::station
