"""The FEBRL data sets' columns as a connector mapping: the one the benchmarks and the FEBRL
tests extract with (the same fields plaintext Splink compares; soc_sec_id is left out)."""

FEBRL_MAPPING = """
[identity]
local_id = "rec_id"
given_name = "given_name"
family_name = "surname"
date_of_birth = { column = "date_of_birth", format = "%Y%m%d" }
postcode = { column = "postcode", validate = false }
address = ["street_number", "address_1", "address_2"]
locality = "suburb"
"""
