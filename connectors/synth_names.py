"""Reference data for the synthetic population: UK-style names, nicknames, places.

Plain lists, roughly in order of frequency (the generator draws with Zipf-like weights,
so "Smith" is common and "Quinnell" is rare, as in real registers).
"""

from __future__ import annotations

MALE_GIVEN = """
Oliver George Harry Jack Jacob Noah Charlie Thomas Oscar William James Leo Alfie Henry
Joshua Freddie Archie Ethan Isaac Alexander Joseph Edward Samuel Max Daniel Arthur Lucas
Mohammed Logan Theo Harrison Benjamin Mason Sebastian Finley Adam Dylan Zachary Riley
Teddy Theodore David Elijah Jake Toby Louie Reuben Arlo Hugo Luca Jaxon Matthew Harvey
Reggie Michael Harley Jude Albert Tommy Luke Stanley Jenson Frankie Jayden Gabriel Elliot
Mohammad Ronnie Charles Louis Elliott Frederick Nathan Lewis Blake Rory Ollie Ryan Tyler
Jackson Dexter Ezra John Kai Caleb Jamie Robert Peter Richard Christopher Andrew Mark
Paul Stephen Anthony Kevin Gary Steven Martin Ian Simon Neil Darren Lee Craig Jason
Wayne Dean Stuart Carl Scott Philip Graham Nicholas Keith Colin Alan Brian Trevor Raymond
Dennis Terence Kenneth Gordon Roger Derek Malcolm Barry Geoffrey Nigel Clive Adrian
Patrick Sean Liam Connor Callum Kieran Bradley Aaron Jordan Declan Shane Francis Gerald
Leonard Douglas Edwin Victor Vincent Ronald Donald Lawrence Howard Russell Duncan
""".split()

FEMALE_GIVEN = """
Olivia Amelia Isla Ava Mia Ivy Lily Isabella Rosie Sophia Grace Willow Freya Florence
Emily Ella Poppy Evie Elsie Charlotte Evelyn Sienna Sofia Daisy Phoebe Sophie Alice
Harper Matilda Ruby Emilia Maya Millie Isabelle Erin Arabella Eliza Lucy Esme Layla
Hannah Chloe Jessica Ellie Scarlett Holly Megan Lauren Amy Rebecca Katie Bethany Abigail
Georgia Samantha Natalie Victoria Laura Rachel Emma Sarah Claire Nicola Kelly Michelle
Lisa Joanne Helen Louise Julie Karen Tracey Donna Dawn Angela Deborah Susan Jacqueline
Amanda Alison Catherine Elizabeth Margaret Patricia Christine Linda Barbara Jennifer
Carol Gillian Janet Pauline Valerie Sandra Maureen Brenda Sheila Doreen Jean Joan
Dorothy Irene Kathleen Shirley Josephine Beverley Lorraine Wendy Tina Heather Hayley
Leanne Gemma Kirsty Stacey Danielle Jade Charlene Kimberley Zoe Katherine Caroline
Jane Anne Mary Frances Rosemary Hazel Marion Eleanor Harriet Imogen Jasmine Leah Niamh
Caitlin Aimee Kayleigh Shannon Paige Courtney Abbie Molly Lola Violet Aria Nancy Edith
""".split()

MIDDLE = """
James John William Thomas David Michael Robert Edward George Alexander Anne Louise
Marie Elizabeth Jane Rose May Grace Victoria Catherine Mary Lee Paul Peter Charles
""".split()

FAMILY = """
Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson
Thompson Wright Walker White Edwards Hughes Green Hall Lewis Harris Clarke Patel Jackson
Wood Turner Martin Cooper Hill Ward Morris Moore Clark Lee King Baker Harrison Morgan
Allen James Scott Phillips Watson Davis Parker Price Bennett Young Griffiths Mitchell
Kelly Cook Carter Richardson Bailey Collins Bell Shaw Murphy Miller Cox Richards Khan
Marshall Anderson Simpson Ellis Adams Singh Begum Wilkinson Foster Chapman Powell Webb
Rogers Gray Mason Ali Hunt Hussain Campbell Matthews Owen Palmer Holmes Mills Barnes
Knight Lloyd Butler Russell Barker Fisher Stevens Jenkins Murray Dixon Harvey Graham
Pearson Ahmed Fletcher Walsh Kaur Gibson Howard Andrews Stewart Elliott Reynolds Saunders
Payne Fox Ford Pearce Day Brooks West Lawrence Cole Atkinson Bradley Spencer Gill Dawson
Ball Burton O'Brien Watts Rose Booth Perry Ryan Grant Wells Armstrong Francis Rees Hayes
Hart Hudson Newman Barrett Webster Hunter Gregory Carr Lowe Page Marsh Riley Dunn Woods
Parsons Berry Stone Reid Holland Hawkins Harding Porter Robertson Newton Oliver Reed
Kennedy Williamson Bird Gardner Shah Dean Lane Cooke Bates Henderson Parry Burgess
Bishop Walton Burns Nicholson Shepherd Ross Cross Long Freeman Warren Nicholls Hamilton
Byrne Sutton McDonald Yates Hodgson Robson Curtis Hopkins O'Connor Harper Coleman Watkins
Moss McCarthy Chambers O'Neill Griffin Sharp Hardy Wheeler Potter Osborne Johnston Gordon
Doyle Wallace George Jordan Hutchinson Rowe Burke May Pritchard Gilbert Willis Higgins
Read Miles Stevenson Stephenson Hammond Arnold Buckley Walters Hewitt Barber Nelson
Slater Austin Sullivan Whitehead Mann Frost Lambert Stephens Blake Akhtar Lynch Goodwin
Barton Woodward Thomson Cunningham Quinn Barnett Baxter Bibi Clayton Nash Greenwood
Jennings Holt Kemp Poole Gallagher Bond Stokes Tucker Davidson Fowler Heath Norman
Middleton Lawson Banks French Stanley Jarvis Gibbs Ferguson Hayward Carroll Douglas
Dickinson Todd Barlow Peters Lucas Knowles Hartley Miah Simmons Morton Alexander Field
Morrison Norris Townsend Preston Hancock Thornton Baldwin Burrows Briggs Storey Pugh
Kirby Humphreys Hollis Fairbrother Ashworth Dalton Hargreaves Quinnell Pettigrew Fenwick
Gosling Ridley Sheppard Tiffin Cheeseman Pilcher Pocock Hoad Sandwell Fagg Chittenden
Epps Tapp Stickells Marsden Wellard Boorman Godden Kingsmill Pettman Minter Dunk Sayer
Terry Bushell Jarrett Rickwood Twyman Coveney Castle Laslett Ovenden Bax Amos Usher
""".split()

# Canonical given name -> informal forms seen in agency records.
NICKNAMES: dict[str, tuple[str, ...]] = {
    "William": ("Bill", "Will", "Billy"),
    "Robert": ("Bob", "Rob", "Bobby"),
    "Richard": ("Dick", "Rich", "Ricky"),
    "James": ("Jim", "Jimmy", "Jamie"),
    "Thomas": ("Tom", "Tommy"),
    "Joseph": ("Joe", "Joey"),
    "Edward": ("Ed", "Eddie", "Ted"),
    "Michael": ("Mike", "Mick", "Micky"),
    "Christopher": ("Chris", "Kit"),
    "Anthony": ("Tony",),
    "Andrew": ("Andy", "Drew"),
    "Daniel": ("Dan", "Danny"),
    "David": ("Dave", "Davy"),
    "Matthew": ("Matt",),
    "Nicholas": ("Nick", "Nicky"),
    "Stephen": ("Steve",),
    "Steven": ("Steve",),
    "Samuel": ("Sam", "Sammy"),
    "Benjamin": ("Ben", "Benny"),
    "Alexander": ("Alex", "Sandy"),
    "Frederick": ("Fred", "Freddie"),
    "Charles": ("Charlie", "Chas"),
    "Henry": ("Harry", "Hal"),
    "John": ("Jack", "Johnny"),
    "Kenneth": ("Ken", "Kenny"),
    "Terence": ("Terry",),
    "Raymond": ("Ray",),
    "Ronald": ("Ron", "Ronnie"),
    "Donald": ("Don",),
    "Gerald": ("Gerry",),
    "Leonard": ("Len", "Lenny"),
    "Lawrence": ("Larry", "Laurie"),
    "Patrick": ("Pat", "Paddy"),
    "Philip": ("Phil",),
    "Peter": ("Pete",),
    "Timothy": ("Tim",),
    "Gregory": ("Greg",),
    "Douglas": ("Doug",),
    "Vincent": ("Vince",),
    "Nathan": ("Nat",),
    "Zachary": ("Zach",),
    "Theodore": ("Theo", "Ted"),
    "Elizabeth": ("Liz", "Beth", "Betty", "Lizzie"),
    "Margaret": ("Maggie", "Peggy", "Meg", "Margo"),
    "Catherine": ("Kate", "Cathy", "Kay"),
    "Katherine": ("Kate", "Kathy", "Katie"),
    "Kathleen": ("Kath", "Kathy"),
    "Jennifer": ("Jen", "Jenny"),
    "Patricia": ("Pat", "Trish", "Patsy"),
    "Susan": ("Sue", "Susie"),
    "Deborah": ("Debbie", "Deb"),
    "Victoria": ("Vicky", "Tori"),
    "Rebecca": ("Becky", "Becca"),
    "Samantha": ("Sam", "Sammy"),
    "Jacqueline": ("Jackie",),
    "Christine": ("Chris", "Chrissie"),
    "Alexandra": ("Alex", "Lexie"),
    "Josephine": ("Jo", "Josie"),
    "Joanne": ("Jo",),
    "Pamela": ("Pam",),
    "Barbara": ("Babs", "Barb"),
    "Dorothy": ("Dot", "Dottie"),
    "Abigail": ("Abby", "Abbie"),
    "Eleanor": ("Ellie", "Nell"),
    "Isabella": ("Bella", "Izzy"),
    "Isabelle": ("Izzy",),
    "Charlotte": ("Lottie", "Charlie"),
    "Florence": ("Flo",),
    "Amanda": ("Mandy",),
    "Gillian": ("Gill",),
    "Frances": ("Fran",),
    "Matilda": ("Tilly",),
    "Harriet": ("Hattie",),
    "Natalie": ("Nat",),
    "Kimberley": ("Kim",),
    "Rosemary": ("Rosie",),
    "Valerie": ("Val",),
    "Beverley": ("Bev",),
}

# Thanet-like places; a few synthetic sectors per locality, grouped into wards.
LOCALITIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (town, district, ward names)
    ("Margate", "CT9", ("Margate Central", "Cliftonville West", "Cliftonville East", "Dane Valley", "Salmestone")),
    ("Broadstairs", "CT10", ("Bradstowe", "Viking", "Kingsgate", "St Peters")),
    ("Ramsgate", "CT11", ("Eastcliff", "Central Harbour", "Newington", "Northwood", "Sir Moses Montefiore")),
    ("Ramsgate", "CT12", ("Cliffsend and Pegwell", "Nethercourt")),
    ("Westgate-on-Sea", "CT8", ("Westgate-on-Sea", "Garlinge")),
    ("Birchington", "CT7", ("Birchington North", "Birchington South", "Thanet Villages")),
)

STREET_STEMS = """
High Northdown Canterbury Albert Victoria Grosvenor Athelstan Dalby Ethelbert Harold
Arthur Godwin Sweyn Edgar Milton Norfolk Surrey Sussex Essex Union Church Market Hawley
Cecil Trinity Fort Marine Eastern Western Queens Kings Princes Park Ramsgate Margate
Tivoli Hartsdown Shottendane Nash Manston Minster Tothill Station Mill Chapel Elm Ash
Oak Beech Rowan Laburnum Lime Poplar Cedar Willow Hazel Holly Sea Cliff Harbour Bay
Palm Grange Ellington Newington Pysons Haine Westwood Salmestone Dane Addington Cobb
""".split()

STREET_TYPES = ("Road", "Street", "Avenue", "Close", "Gardens", "Crescent", "Way", "Lane", "Terrace", "Drive")

# Postcode unit letters (Royal Mail never uses C I K M O V in the inward code).
UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
