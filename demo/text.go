package demo

// Synthetic names, places and phrases. Nothing here describes a real
// person, practice or organisation.

type personName struct{ given, gender string }

var olderNames = []personName{
	{"Margaret", "female"}, {"Joan", "female"}, {"Dorothy", "female"}, {"Jean", "female"}, {"Barbara", "female"},
	{"Eileen", "female"}, {"Doreen", "female"}, {"Irene", "female"}, {"Sheila", "female"}, {"Maureen", "female"},
	{"Edna", "female"}, {"Vera", "female"}, {"Marjorie", "female"}, {"Elsie", "female"}, {"Pauline", "female"},
	{"Brian", "male"}, {"Kenneth", "male"}, {"Ronald", "male"}, {"Albert", "male"}, {"Harold", "male"},
	{"Frank", "male"}, {"Derek", "male"}, {"Alan", "male"}, {"Norman", "male"}, {"Leslie", "male"},
	{"Stanley", "male"}, {"Gordon", "male"}, {"Walter", "male"},
}

var adultNames = []personName{
	{"Aisha", "female"}, {"Sarah", "female"}, {"Zainab", "female"}, {"Emma", "female"}, {"Kerry", "female"},
	{"Stacey", "female"}, {"Nasreen", "female"}, {"Michelle", "female"}, {"Sadia", "female"}, {"Joanne", "female"},
	{"Agnieszka", "female"}, {"Linda", "female"}, {"Mohammed", "male"}, {"Daniel", "male"}, {"Tomasz", "male"},
	{"Lee", "male"}, {"Imran", "male"}, {"Paul", "male"}, {"Jordan", "male"}, {"Craig", "male"}, {"Dean", "male"},
	{"Raymond", "male"}, {"Alex", "non_binary"},
}

var familyNames = []string{
	"Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Thomas", "Roberts", "Walker", "Wright",
	"Robinson", "Thompson", "Hughes", "Edwards", "Green", "Hall", "Wood", "Harris", "Lewis", "Jackson",
	"Clarke", "Ali", "Begum", "Patel", "Kowalski", "Murphy", "Ashworth", "Heyes", "Fairhurst", "Mather",
}

var streets = []string{
	"Church Street", "Park Road", "Victoria Street", "Station Road", "Mill Lane", "Chapel Street",
	"Queens Road", "Moss Lane", "Market Street", "Hill Street", "Orchard Close", "Elm Grove",
}

var ashtonPractices = []string{
	"Ashton PCN Practice 1", "Ashton PCN Practice 2", "Ashton PCN Practice 3",
	"Ashton PCN Practice 4", "Ashton PCN Practice 5", "Ashton PCN Practice 6",
	"Ashton PCN Practice 7", "Ashton PCN Practice 8", "Ashton PCN Practice 9",
}

// Wigan frailty needs: mostly the first eight categories.
var wiganNeeds = []string{
	"aids_adaptations_home_safety", "mobility_falls", "coordinating_appointments_navigation",
	"loneliness_isolation", "mental_health_mood", "finances_benefits_debt", "bereavement",
	"carer_support", "practical_help_at_home", "memory_cognition", "transport", "blue_badge_or_forms_support",
}
var wiganNeedWeights = []int{14, 14, 10, 12, 8, 10, 5, 6, 4, 3, 3, 3}

var ashtonNeeds = []string{
	"mental_health_mood", "loneliness_isolation", "finances_benefits_debt", "housing", "physical_activity",
	"healthy_lifestyle", "ltc_self_management", "food_insecurity", "digital_inclusion",
	"employment_volunteering_learning", "carer_support", "bereavement", "transport", "other",
}
var ashtonNeedWeights = []int{16, 12, 14, 8, 6, 5, 6, 6, 4, 6, 4, 3, 3, 2}

var needWords = map[string]string{
	"aids_adaptations_home_safety":         "Struggling with the stairs and the bath; would like rails and a bath seat.",
	"mobility_falls":                       "Two falls since the summer, worried about going out alone.",
	"coordinating_appointments_navigation": "Lots of letters from the hospital and not sure which appointment is which.",
	"loneliness_isolation":                 "Doesn't see anyone most days since giving up driving.",
	"mental_health_mood":                   "Feeling low and not sleeping well.",
	"finances_benefits_debt":               "Worried about the heating bills; not claiming Attendance Allowance.",
	"bereavement":                          "Lost their partner earlier this year and finding the evenings hard.",
	"carer_support":                        "Daughter does a lot and is getting tired.",
	"practical_help_at_home":               "Can't manage the shopping or the garden any more.",
	"memory_cognition":                     "Family noticing forgetfulness; missed tablets a few times.",
	"transport":                            "No way of getting to the clinic without a lift.",
	"blue_badge_or_forms_support":          "Needs help with the Blue Badge form.",
	"housing":                              "Damp in the flat and the landlord is not responding.",
	"physical_activity":                    "Would like to get more active but doesn't know where to start.",
	"healthy_lifestyle":                    "Wants to cut down smoking and eat better.",
	"ltc_self_management":                  "Finding it hard to manage diabetes and COPD together.",
	"food_insecurity":                      "Running short of food before payday.",
	"digital_inclusion":                    "No smartphone; can't book appointments online.",
	"employment_volunteering_learning":     "Would like to volunteer to get out of the house.",
	"other":                                "Wants to talk things through.",
}

var goalWords = map[string]string{
	"aids_adaptations_home_safety":         "I want to get in and out of the bath safely.",
	"mobility_falls":                       "I want to walk to the corner shop again without falling.",
	"coordinating_appointments_navigation": "I want to know what my appointments are for and get to them.",
	"loneliness_isolation":                 "I want to have someone to talk to a few times a week.",
	"mental_health_mood":                   "I want to feel more like myself.",
	"finances_benefits_debt":               "I want to get the money I'm entitled to so I can keep warm.",
	"bereavement":                          "I want to find a way to cope with the evenings.",
	"carer_support":                        "I want my daughter to get some support too.",
	"practical_help_at_home":               "I want help with the shopping each week.",
	"memory_cognition":                     "I want to remember my tablets every day.",
	"transport":                            "I want to get to my appointments without relying on neighbours.",
	"blue_badge_or_forms_support":          "I want my Blue Badge sorted.",
	"housing":                              "I want the damp sorted so my chest gets better.",
	"physical_activity":                    "I want to walk for 20 minutes three times a week.",
	"healthy_lifestyle":                    "I want to stop smoking by the spring.",
	"ltc_self_management":                  "I want to understand my conditions and feel in control.",
	"food_insecurity":                      "I want enough food in the house all month.",
	"digital_inclusion":                    "I want to be able to order my prescriptions online.",
	"employment_volunteering_learning":     "I want to volunteer one morning a week.",
	"other":                                "I want to feel less stuck.",
}

var whatMatters = []string{
	"Staying in my own home, near my garden.",
	"Seeing my grandchildren and getting to church on Sundays.",
	"Being independent and not being a burden.",
	"Getting back to my bowls club.",
	"Feeling safe at night.",
	"Keeping my dog and being able to walk her.",
	"Having a chat with someone during the day.",
}

var visitNotes = []string{
	"Home visit. Talked through what matters; person keen to stay at home.",
	"Telephone follow-up. Rails fitted last week, using them daily.",
	"Reviewed plan together. Befriender call arranged for Tuesdays.",
	"Person tired today; short visit, will call next week.",
	"Helped complete Attendance Allowance form.",
	"Discussed falls; pendant alarm information left.",
	"Carer present; carer's assessment discussed.",
	"Went through hospital letters and wrote appointments on the calendar.",
}

type org struct {
	name, typ, pathway string
	categories         []string
}

// The Ashton PCN community directory (about forty entries).
var ashtonOrgs = []org{
	{"Community Befriending Service", "vcse_charity", "direct_referral", []string{"loneliness_isolation"}},
	{"Telephone Friendship Line", "vcse_charity", "both", []string{"loneliness_isolation"}},
	{"Welfare Benefits Advice Service", "statutory_la", "direct_referral", []string{"finances_benefits_debt", "blue_badge_or_forms_support"}},
	{"Debt Advice Centre", "vcse_charity", "direct_referral", []string{"finances_benefits_debt"}},
	{"Citizens' Advice Drop-in", "vcse_charity", "signpost_only", []string{"finances_benefits_debt", "housing"}},
	{"Community Food Pantry", "community_group", "signpost_only", []string{"food_insecurity"}},
	{"Food Bank", "vcse_charity", "direct_referral", []string{"food_insecurity"}},
	{"Community Fridge", "community_group", "signpost_only", []string{"food_insecurity"}},
	{"Housing Options Team", "statutory_la", "direct_referral", []string{"housing"}},
	{"Housing Association Tenancy Support", "housing_assoc", "direct_referral", []string{"housing"}},
	{"Talking Therapies Self-referral", "nhs", "signpost_only", []string{"mental_health_mood"}},
	{"Mental Health Peer Support Group", "vcse_charity", "both", []string{"mental_health_mood"}},
	{"Men's Shed", "community_group", "signpost_only", []string{"loneliness_isolation", "mental_health_mood"}},
	{"Women's Wellbeing Circle", "community_group", "signpost_only", []string{"mental_health_mood", "loneliness_isolation"}},
	{"Bereavement Support Service", "vcse_charity", "direct_referral", []string{"bereavement"}},
	{"Carers Centre", "vcse_charity", "direct_referral", []string{"carer_support"}},
	{"Young Carers Project", "vcse_charity", "direct_referral", []string{"carer_support"}},
	{"Walking for Health Group", "community_group", "signpost_only", []string{"physical_activity"}},
	{"Chair-based Exercise Class", "community_group", "signpost_only", []string{"physical_activity", "mobility_falls"}},
	{"Leisure Centre Exercise Referral", "statutory_la", "direct_referral", []string{"physical_activity", "healthy_lifestyle"}},
	{"Stop Smoking Service", "nhs", "direct_referral", []string{"healthy_lifestyle"}},
	{"Weight Management Programme", "nhs", "direct_referral", []string{"healthy_lifestyle"}},
	{"Diabetes Education Course", "nhs", "direct_referral", []string{"ltc_self_management"}},
	{"Breathe Easy Support Group", "vcse_charity", "signpost_only", []string{"ltc_self_management"}},
	{"Digital Skills Drop-in at the Library", "statutory_la", "signpost_only", []string{"digital_inclusion"}},
	{"Device Lending Scheme", "cic", "direct_referral", []string{"digital_inclusion"}},
	{"Adult Learning Service", "statutory_la", "signpost_only", []string{"employment_volunteering_learning"}},
	{"Volunteer Centre", "vcse_charity", "both", []string{"employment_volunteering_learning"}},
	{"Employment Support Programme", "cic", "direct_referral", []string{"employment_volunteering_learning"}},
	{"Community Transport Dial-a-Ride", "vcse_charity", "direct_referral", []string{"transport"}},
	{"Mosque Community Welfare Group", "faith_group", "signpost_only", []string{"loneliness_isolation", "food_insecurity"}},
	{"Church Lunch Club", "faith_group", "signpost_only", []string{"loneliness_isolation", "food_insecurity"}},
	{"Community Allotment Project", "cic", "signpost_only", []string{"physical_activity", "loneliness_isolation"}},
	{"Arts on Prescription", "cic", "direct_referral", []string{"mental_health_mood", "loneliness_isolation"}},
	{"Community Choir", "community_group", "signpost_only", []string{"loneliness_isolation"}},
	{"Domestic Abuse Support Service", "vcse_charity", "direct_referral", []string{"safeguarding_concern"}},
	{"Energy Advice Service", "cic", "direct_referral", []string{"finances_benefits_debt", "housing"}},
	{"Age-friendly Social Club", "vcse_charity", "signpost_only", []string{"loneliness_isolation"}},
	{"Memory Café", "vcse_charity", "signpost_only", []string{"memory_cognition", "carer_support"}},
	{"Refugee and Migrant Support Group", "vcse_charity", "both", []string{"other", "employment_volunteering_learning"}},
	{"Home Improvement Agency", "statutory_la", "direct_referral", []string{"aids_adaptations_home_safety", "housing"}},
}

// The Wigan frailty team's smaller directory.
var wiganOrgs = []org{
	{"Home Aids and Adaptations Team", "statutory_la", "direct_referral", []string{"aids_adaptations_home_safety"}},
	{"Falls Prevention Exercise Group", "nhs", "direct_referral", []string{"mobility_falls"}},
	{"Befriending by Phone", "vcse_charity", "direct_referral", []string{"loneliness_isolation"}},
	{"Older People's Lunch Club", "community_group", "signpost_only", []string{"loneliness_isolation", "food_insecurity"}},
	{"Pension and Benefits Advice Service", "vcse_charity", "direct_referral", []string{"finances_benefits_debt", "blue_badge_or_forms_support"}},
	{"Borough Carers Centre", "vcse_charity", "direct_referral", []string{"carer_support"}},
	{"Bereavement Listening Service", "vcse_charity", "direct_referral", []string{"bereavement"}},
	{"Community Mental Health Support for Older People", "nhs", "direct_referral", []string{"mental_health_mood", "memory_cognition"}},
	{"Shopping and Handyperson Service", "cic", "direct_referral", []string{"practical_help_at_home"}},
	{"Community Transport", "vcse_charity", "direct_referral", []string{"transport", "coordinating_appointments_navigation"}},
	{"Pendant Alarm and Telecare Service", "statutory_la", "direct_referral", []string{"mobility_falls", "aids_adaptations_home_safety"}},
}

// ons4Items in a fixed order, so random draws do not follow map order.
var ons4Items = []string{"ons4_life_satisfaction", "ons4_worthwhile", "ons4_happy", "ons4_anxious"}
