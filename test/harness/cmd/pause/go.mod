module mail-continuity.local/pause

go 1.24
