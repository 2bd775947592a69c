#include "eol/instruments/toml_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace eol::instruments {
namespace {

std::string with_location(std::string_view source, std::uint32_t line, std::uint32_t column,
                          std::string_view message) {
    return format_toml_location(source, line, column) + ": " + std::string(message);
}

// A linear pass over the text that knows just enough TOML to tell keys,
// table headers, brackets, strings and comments apart. It never recurses,
// so it is safe on any input; whatever it misreads is malformed TOML that
// toml++ then reports.
class DepthScan {
public:
    DepthScan(std::string_view text, std::string_view source, const TomlLimits& limits)
        : s_(text), source_(source), limits_(limits) {}

    void run() {
        while (skip_blank_lines()) {
            const char c = s_[i_];
            if (c == '#') {
                skip_to_eol();
            } else if (c == '[') {
                ++statements_;
                header();
            } else {
                ++statements_;
                key_value();
            }
        }
        if (statements_ == 0 && !limits_.allow_empty)
            throw TomlError(std::string(source_), 1, 1,
                            s_.empty() ? "empty file: no TOML table or key"
                                       : "no TOML table or key (only blanks and comments)");
    }

private:
    struct Frame {
        char kind;     // '[' array, '{' inline table
        int key_segments;  // of the key currently assigned inside an inline table
    };

    bool eof() const { return i_ >= s_.size(); }
    char peek(std::size_t k = 0) const { return i_ + k < s_.size() ? s_[i_ + k] : '\0'; }
    void advance() {
        const unsigned char c = static_cast<unsigned char>(s_[i_++]);
        if (c == '\n') {
            ++line_;
            col_ = 1;
        } else if ((c & 0xC0u) != 0x80u) {
            ++col_;  // count code points, not UTF-8 continuation bytes
        }
    }
    void skip_spaces() {
        while (!eof() && (peek() == ' ' || peek() == '\t' || peek() == '\r')) advance();
    }
    /// Skips blanks and newlines; false at the end of the text.
    bool skip_blank_lines() {
        while (!eof() && (peek() == ' ' || peek() == '\t' || peek() == '\r' || peek() == '\n')) advance();
        return !eof();
    }
    void skip_to_eol() {
        while (!eof() && peek() != '\n') advance();
    }

    /// At a quote: skips a basic, literal or multi-line string.
    void skip_string() {
        const char q = peek();
        if (peek(1) == q && peek(2) == q) {  // """ or '''
            for (int k = 0; k < 3; ++k) advance();
            while (!eof()) {
                if (q == '"' && peek() == '\\') {
                    advance();
                    if (!eof()) advance();
                    continue;
                }
                if (peek() == q && peek(1) == q && peek(2) == q) {
                    for (int k = 0; k < 3; ++k) advance();
                    while (peek() == q) advance();  // up to two quotes may close the content
                    return;
                }
                advance();
            }
            return;
        }
        advance();
        while (!eof() && peek() != '\n') {
            if (q == '"' && peek() == '\\') {
                advance();
                if (!eof() && peek() != '\n') advance();
                continue;
            }
            if (peek() == q) {
                advance();
                return;
            }
            advance();
        }
    }

    void check(int level, std::uint32_t line, std::uint32_t col) const {
        if (level > limits_.max_depth)
            throw TomlError(std::string(source_), line, col,
                            fmt::format("nesting deeper than {} levels (dotted keys, table headers, "
                                        "arrays and inline tables together)",
                                        limits_.max_depth));
    }

    /// Counts the dotted segments of a key up to one of "=[]{},#" or a
    /// newline (not consumed); checks `base` + segments on the way.
    int key_segments(int base) {
        int segments = 0;
        bool content = false;
        while (!eof()) {
            const char c = peek();
            if (c == '=' || c == '[' || c == ']' || c == '{' || c == '}' || c == ',' || c == '#' ||
                c == '\n')
                break;
            if (c == '"' || c == '\'') {
                content = true;
                skip_string();
                continue;
            }
            if (c == '.') {
                ++segments;
                check(base + segments + 1, line_, col_);
            } else if (c != ' ' && c != '\t' && c != '\r') {
                content = true;
            }
            advance();
        }
        return content || segments > 0 ? segments + 1 : 0;
    }

    void header() {
        const std::uint32_t line = line_, col = col_;
        advance();
        const bool array_of_tables = peek() == '[';
        if (array_of_tables) advance();
        const int extra = array_of_tables ? 1 : 0;
        header_depth_ = key_segments(extra) + extra;
        check(header_depth_, line, col);
        // The closing bracket(s), then a comment or nothing: toml++ checks.
        skip_to_eol();
    }

    int depth(int base) const {
        int d = base;
        for (const auto& f : frames_) d += 1 + f.key_segments;
        return d;
    }

    void key_value() {
        const std::uint32_t line = line_, col = col_;
        const int base = header_depth_ + key_segments(header_depth_);
        check(base, line, col);
        if (peek() != '=') {
            skip_to_eol();  // not a key = value line: a syntax error toml++ names
            return;
        }
        advance();
        frames_.clear();
        while (!eof()) {
            const char c = peek();
            if (c == '\n') {
                if (frames_.empty()) return;
                advance();
            } else if (c == '"' || c == '\'') {
                skip_string();
            } else if (c == '#') {
                skip_to_eol();
            } else if (c == '[' || c == '{') {
                const std::uint32_t l = line_, k = col_;
                frames_.push_back({c, 0});
                check(depth(base), l, k);
                advance();
                if (c == '{') inline_key(base);
            } else if (c == ']' || c == '}') {
                if (!frames_.empty()) frames_.pop_back();
                advance();
            } else if (c == ',') {
                advance();
                if (!frames_.empty() && frames_.back().kind == '{') inline_key(base);
            } else {
                advance();
            }
        }
    }

    /// After '{' or ',' in an inline table: the key of the next entry.
    void inline_key(int base) {
        skip_spaces();
        frames_.back().key_segments = 0;
        const int segments = key_segments(depth(base));
        frames_.back().key_segments = segments;
        if (peek() == '=') advance();
    }

    std::string_view s_;
    std::string_view source_;
    const TomlLimits& limits_;
    std::size_t i_ = 0;
    std::uint32_t line_ = 1, col_ = 1;
    int header_depth_ = 0;
    std::size_t statements_ = 0;
    std::vector<Frame> frames_;
};

}  // namespace

TomlError::TomlError(std::string source, std::uint32_t line, std::uint32_t column, std::string message)
    : DefinitionError(with_location(source, line, column, message)), source_(std::move(source)),
      line_(line), column_(column), message_(std::move(message)) {}

std::string format_toml_location(std::string_view source, std::uint32_t line, std::uint32_t column) {
    if (line == 0) return std::string(source);
    if (column == 0) return fmt::format("{}:{}", source, line);
    return fmt::format("{}:{}:{}", source, line, column);
}

void check_toml_text(std::string_view text, std::string_view source, const TomlLimits& limits) {
    if (text.size() > limits.max_bytes)
        throw TomlError(std::string(source), 0, 0,
                        fmt::format("{} bytes is more than the limit of {} bytes for a TOML file",
                                    text.size(), limits.max_bytes));
    DepthScan(text, source, limits).run();
}

toml::table parse_toml_text(std::string_view text, std::string_view source, const TomlLimits& limits) {
    check_toml_text(text, source, limits);
    try {
        return toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        throw TomlError(std::string(source), e.source().begin.line, e.source().begin.column,
                        "TOML syntax: " + std::string(e.description()));
    }
}

std::string read_toml_file(const std::filesystem::path& file, const TomlLimits& limits) {
    const std::string name = file.string();
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) throw TomlError(name, 0, 0, std::string("cannot open: ") + std::strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        throw TomlError(name, 0, 0, std::string("cannot stat: ") + std::strerror(errno));
    if (!S_ISREG(st.st_mode))
        throw TomlError(name, 0, 0,
                        S_ISDIR(st.st_mode) ? "is a directory, not a TOML file"
                                            : "not a regular file (a FIFO, socket or device?)");
    if (static_cast<std::uint64_t>(st.st_size) > limits.max_bytes)
        throw TomlError(name, 0, 0,
                        fmt::format("{} bytes is more than the limit of {} bytes for a TOML file",
                                    st.st_size, limits.max_bytes));
    std::string text;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw TomlError(name, 0, 0, std::string("cannot read: ") + std::strerror(errno));
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > limits.max_bytes)  // grew while being read
            throw TomlError(name, 0, 0,
                            fmt::format("more than the limit of {} bytes for a TOML file",
                                        limits.max_bytes));
    }
    return text;
}

toml::table parse_toml_file(const std::filesystem::path& file, const TomlLimits& limits) {
    const std::string text = read_toml_file(file, limits);
    return parse_toml_text(text, file.string(), limits);
}

}  // namespace eol::instruments
