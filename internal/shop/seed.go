package shop

import (
	"slices"
	"strings"
	"time"
)

// SeedTime is the UpdatedAt of every seeded product.
var SeedTime = time.Date(2026, 1, 15, 9, 0, 0, 0, time.UTC)

// Size runs shared by the seed table. SeedCatalog clones them, so callers
// never share a Sizes slice with this table or with each other.
var (
	seedSizesUnisex  = []string{"36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46"}
	seedSizesWomens  = []string{"35", "36", "37", "38", "39", "40", "41", "42"}
	seedSizesMens    = []string{"40", "41", "42", "43", "44", "45", "46", "47"}
	seedSizesCourt   = []string{"40", "41", "42", "43", "44", "45", "46", "47", "48", "49", "50"}
	seedSizesRunHalf = []string{"38", "38.5", "39", "39.5", "40", "40.5", "41", "41.5", "42", "42.5", "43", "43.5", "44", "44.5", "45", "45.5", "46"}
	seedSizesFormal  = []string{"39", "39.5", "40", "40.5", "41", "41.5", "42", "42.5", "43", "43.5", "44", "44.5", "45", "46"}
)

type seedRow struct {
	id, brand, model, category string
	cents                      int64
	currency                   string
	sizes                      []string
	colour                     string
	launch                     bool
	description                string
}

var seedRows = []seedRow{
	// running
	{"contoso-skyline-1", "Contoso", "Skyline 1", "running", 149_99, "EUR", seedSizesRunHalf, "White/Volt", false,
		"A lightweight daily trainer with a responsive foam midsole. Built for easy miles and tempo days alike."},
	{"contoso-skyline-1-launch-edition", "Contoso", "Skyline 1 Launch Edition", "running", 220_00, "EUR", seedSizesRunHalf, "Midnight/Gold", true,
		"A numbered launch run of the Skyline 1 with a carbon plate and reflective gold accents. Limited to one pair per customer."},
	{"northwind-tempo-racer-3", "Northwind Athletics", "Tempo Racer 3", "running", 179_99, "EUR", seedSizesRunHalf, "Electric Blue", false,
		"A race-day shoe with a full-length carbon plate and a breathable engineered mesh upper."},
	{"proseware-cloudstride", "Proseware", "Cloudstride", "running", 129_99, "USD", seedSizesUnisex, "Grey/Coral", false,
		"A plush neutral runner for long, slow distances. The wide base keeps tired legs stable."},
	{"fabrikam-pace-2", "Fabrikam", "Pace 2", "running", 89_99, "EUR", seedSizesUnisex, "Black/White", false,
		"An affordable everyday running shoe with a durable carbon-rubber outsole."},

	// trail
	{"alpine-ski-house-ridgeline-gtx", "Alpine Ski House", "Ridgeline GTX", "trail", 169_99, "EUR", seedSizesMens, "Olive/Black", false,
		"A waterproof trail runner with a rock plate and 5 mm lugs for technical mountain terrain."},
	{"alpine-ski-house-scree-runner", "Alpine Ski House", "Scree Runner", "trail", 139_99, "EUR", seedSizesMens, "Slate/Orange", false,
		"A nimble, low-drop trail shoe for fast descents on loose ground."},
	{"tailspin-canyon-trail", "Tailspin", "Canyon Trail", "trail", 119_99, "USD", seedSizesUnisex, "Sand/Rust", false,
		"A cushioned trail shoe for desert paths and hardpack. A gaiter-ready collar keeps grit out."},
	{"northwind-summit-trail-2", "Northwind Athletics", "Summit Trail 2", "trail", 144_99, "EUR", seedSizesRunHalf, "Forest Green", false,
		"A protective ultra-distance trail shoe with a roomy toe box and a sticky outsole for wet rock."},
	{"adventure-works-pathfinder", "Adventure Works", "Pathfinder", "trail", 109_99, "EUR", seedSizesUnisex, "Charcoal/Lime", false,
		"A versatile door-to-trail shoe that is as happy on gravel as on forest singletrack."},

	// basketball
	{"contoso-hyperlift-4", "Contoso", "Hyperlift 4", "basketball", 159_99, "EUR", seedSizesCourt, "White/Red", false,
		"A high-top with a cushioned heel unit and a herringbone outsole for quick cuts."},
	{"northwind-fastbreak-mid", "Northwind Athletics", "Fastbreak Mid", "basketball", 129_99, "EUR", seedSizesCourt, "Black/Orange", false,
		"A mid-cut guard shoe with a low-to-the-floor ride and a secure lockdown strap."},
	{"litware-court-king", "Litware", "Court King", "basketball", 99_99, "USD", seedSizesCourt, "Royal Blue/White", false,
		"A supportive, durable hoops shoe that holds up on indoor and outdoor courts."},
	{"litware-court-king-launch-edition", "Litware", "Court King Launch Edition", "basketball", 199_99, "USD", seedSizesCourt, "Purple/Gold", true,
		"A limited launch colourway of the Court King with a premium leather upper. Each pair ships in a numbered box."},
	{"fabrikam-dunkline-low", "Fabrikam", "Dunkline Low", "basketball", 89_99, "EUR", seedSizesCourt, "Triple Black", false,
		"A low-cut court shoe with responsive forefoot cushioning for explosive first steps."},

	// lifestyle
	{"woodgrove-heritage-66", "Woodgrove", "Heritage 66", "lifestyle", 99_99, "EUR", seedSizesUnisex, "Cream/Navy", false,
		"A suede-and-nylon sneaker modelled on a 1966 training shoe, with a gum rubber sole."},
	{"contoso-classic-canvas", "Contoso", "Classic Canvas", "lifestyle", 59_99, "EUR", seedSizesUnisex, "Off-White", false,
		"A timeless vulcanised canvas sneaker. Pairs with everything."},
	{"wide-world-metro-knit", "Wide World", "Metro Knit", "lifestyle", 84_99, "EUR", seedSizesUnisex, "Heather Grey", false,
		"A slip-on knit sneaker with a soft foam footbed for long days in the city."},
	{"wide-world-metro-knit-launch-edition", "Wide World", "Metro Knit Launch Edition", "lifestyle", 159_99, "EUR", seedSizesUnisex, "Sunset Gradient", true,
		"A limited launch of the Metro Knit in a hand-dyed sunset gradient. Only a few hundred pairs exist."},
	{"proseware-retro-court", "Proseware", "Retro Court", "lifestyle", 109_99, "USD", seedSizesUnisex, "White/Green", false,
		"A clean leather court sneaker with perforated toe and a padded collar."},

	// hiking
	{"alpine-ski-house-matterhorn-mid", "Alpine Ski House", "Matterhorn Mid", "hiking", 189_99, "EUR", seedSizesMens, "Brown/Red", false,
		"A stiff, supportive mid-cut for alpine scrambles and heavy packs. Crampon-compatible heel welt."},
	{"adventure-works-trekker-mid-wp", "Adventure Works", "Trekker Mid WP", "hiking", 139_99, "EUR", seedSizesUnisex, "Khaki", false,
		"A waterproof mid hiker with a cushioned midsole for long days on the trail."},
	{"woodgrove-fernhill-hiker", "Woodgrove", "Fernhill Hiker", "hiking", 119_99, "EUR", seedSizesUnisex, "Moss/Tan", false,
		"A nubuck leather hiker that breaks in quickly and resoles easily."},
	{"tailspin-mesa-low", "Tailspin", "Mesa Low", "hiking", 99_99, "USD", seedSizesUnisex, "Taupe", false,
		"A breathable low hiker for warm weather and well-kept trails."},
	{"northwind-highland-gtx", "Northwind Athletics", "Highland GTX", "hiking", 159_99, "EUR", seedSizesRunHalf, "Graphite/Blue", false,
		"A light waterproof hiking shoe with a lugged outsole that grips on mud and wet roots."},

	// tennis
	{"fabrikam-baseline-pro", "Fabrikam", "Baseline Pro", "tennis", 129_99, "EUR", seedSizesRunHalf, "White/Navy", false,
		"An all-court tennis shoe with a reinforced toe drag and a six-month outsole guarantee."},
	{"fabrikam-baseline-clay", "Fabrikam", "Baseline Clay", "tennis", 129_99, "EUR", seedSizesRunHalf, "White/Terracotta", false,
		"The Baseline Pro with a full herringbone outsole for sliding on clay."},
	{"contoso-ace-court", "Contoso", "Ace Court", "tennis", 109_99, "EUR", seedSizesUnisex, "White/Mint", false,
		"A stable, lightweight tennis shoe for club players who move a lot."},
	{"litware-smash-2", "Litware", "Smash 2", "tennis", 89_99, "USD", seedSizesUnisex, "Yellow/Black", false,
		"A durable entry-level tennis shoe with a cushioned heel and a wide base."},
	{"proseware-volley-lite", "Proseware", "Volley Lite", "tennis", 79_99, "EUR", seedSizesWomens, "Pink/White", false,
		"A low-profile tennis and padel shoe with a flexible forefoot."},

	// training
	{"northwind-forge-trainer", "Northwind Athletics", "Forge Trainer", "training", 119_99, "EUR", seedSizesUnisex, "Black/Volt", false,
		"A stable gym shoe with a flat heel for lifting and a rope-climb guard on the midsole."},
	{"litware-liftmaster", "Litware", "Liftmaster", "training", 139_99, "USD", seedSizesMens, "Red/Black", false,
		"A weightlifting shoe with a raised TPU heel and a midfoot strap for deep squats."},
	{"proseware-flexcore", "Proseware", "FlexCore", "training", 89_99, "EUR", seedSizesUnisex, "Navy/White", false,
		"A flexible cross-trainer for circuits, HIIT and short runs."},
	{"tailspin-jetstream-launch-edition", "Tailspin", "Jetstream Launch Edition", "training", 179_99, "EUR", seedSizesUnisex, "Chrome Silver", true,
		"A limited launch trainer with a mirrored chrome upper and a dual-density midsole. Released once, never restocked."},
	{"contoso-studio-flex", "Contoso", "Studio Flex", "training", 69_99, "EUR", seedSizesWomens, "Lilac", false,
		"A light, sock-like shoe for studio classes, yoga and pilates."},

	// sandals
	{"wide-world-lagoon-slide", "Wide World", "Lagoon Slide", "sandals", 29_99, "EUR", seedSizesUnisex, "Ocean Blue", false,
		"A one-piece foam slide for the pool and the beach."},
	{"wide-world-riviera-sandal", "Wide World", "Riviera Sandal", "sandals", 59_99, "EUR", seedSizesWomens, "Tan Leather", false,
		"A strappy leather sandal with a cushioned footbed and an adjustable ankle buckle."},
	{"adventure-works-river-sandal", "Adventure Works", "River Sandal", "sandals", 69_99, "EUR", seedSizesUnisex, "Black/Grey", false,
		"A sport sandal with quick-dry webbing and a grippy outsole for river crossings."},
	{"woodgrove-cork-two-strap", "Woodgrove", "Cork Two-Strap", "sandals", 79_99, "EUR", seedSizesUnisex, "Cognac", false,
		"A classic two-strap sandal on a contoured cork footbed that moulds to your foot."},
	{"tailspin-recovery-slide", "Tailspin", "Recovery Slide", "sandals", 39_99, "USD", seedSizesUnisex, "Stone", false,
		"A thick, soft recovery slide for tired feet after a long run."},

	// boots
	{"alpine-ski-house-glacier-winter-boot", "Alpine Ski House", "Glacier Winter Boot", "boots", 219_99, "EUR", seedSizesMens, "Black", false,
		"An insulated winter boot rated to -30 °C with a waterproof membrane and an ice-grip outsole."},
	{"alpine-ski-house-apres-boot", "Alpine Ski House", "Après Boot", "boots", 159_99, "EUR", seedSizesWomens, "Chestnut", false,
		"A warm, shearling-lined après-ski boot for snowy village streets."},
	{"woodgrove-foundry-chelsea", "Woodgrove", "Foundry Chelsea", "boots", 189_99, "EUR", seedSizesMens, "Dark Brown Suede", false,
		"A Goodyear-welted suede Chelsea boot with elastic gussets and a leather sole."},
	{"adventure-works-timberline-work-boot", "Adventure Works", "Timberline Work Boot", "boots", 169_99, "USD", seedSizesMens, "Wheat", false,
		"A waterproof steel-toe work boot with an oil- and slip-resistant outsole."},
	{"wide-world-harbor-rain-boot", "Wide World", "Harbor Rain Boot", "boots", 49_99, "EUR", seedSizesUnisex, "Yellow", false,
		"A natural rubber rain boot with a cotton lining. Made for puddles."},

	// formal
	{"woodgrove-albany-oxford", "Woodgrove", "Albany Oxford", "formal", 249_99, "EUR", seedSizesFormal, "Oxblood", false,
		"A cap-toe Oxford in hand-burnished calfskin on a Goodyear-welted leather sole."},
	{"woodgrove-kensington-derby", "Woodgrove", "Kensington Derby", "formal", 229_99, "EUR", seedSizesFormal, "Black Calf", false,
		"A plain-toe Derby that works with a suit and with jeans."},
	{"fabrikam-regent-loafer", "Fabrikam", "Regent Loafer", "formal", 179_99, "EUR", seedSizesFormal, "Burgundy", false,
		"A penny loafer in polished leather with a flexible Blake-stitched sole."},
	{"litware-double-monk", "Litware", "Double Monk Strap", "formal", 199_99, "USD", seedSizesFormal, "Walnut", false,
		"A double monk strap shoe with brushed brass buckles and a slim, elegant last."},
	{"proseware-evening-pump", "Proseware", "Evening Pump", "formal", 139_99, "EUR", seedSizesWomens, "Nude Patent", false,
		"A pointed patent-leather pump with a 7 cm heel and a padded insole."},
}

// SeedCatalog returns the catalog a new deployment starts with: 50 realistic
// shoes, always the same, sorted by ID. UpdatedAt is the fixed SeedTime. Each
// call returns fresh slices (including Sizes) that the caller may modify.
func SeedCatalog() []Product {
	products := make([]Product, 0, len(seedRows))
	for _, r := range seedRows {
		products = append(products, Product{
			ID:          r.id,
			Brand:       r.brand,
			Model:       r.model,
			Category:    r.category,
			Price:       Money{AmountCents: r.cents, Currency: r.currency},
			Sizes:       slices.Clone(r.sizes),
			Colour:      r.colour,
			Description: r.description,
			Launch:      r.launch,
			UpdatedAt:   SeedTime,
		})
	}
	slices.SortFunc(products, func(a, b Product) int { return strings.Compare(a.ID, b.ID) })
	return products
}

// SeedStock returns the stock a new deployment starts with for every SKU of
// the seed catalog: 5 units per size of a launch shoe, 25 of any other.
func SeedStock() map[string]int {
	out := map[string]int{}
	for _, p := range SeedCatalog() {
		n := 25
		if p.Launch {
			n = 5
		}
		for _, size := range p.Sizes {
			out[SKU(p.ID, size)] = n
		}
	}
	return out
}
