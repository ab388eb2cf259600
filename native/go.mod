module joinedup/native

go 1.26
