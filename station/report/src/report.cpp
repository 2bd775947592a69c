namespace eol::station { int report_placeholder() { return 0; } }
