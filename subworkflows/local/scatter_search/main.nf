//
// The search scattered by query blocks: each task searches its blocks of query windows against
// all windows and decoys; `evoscan merge` joins the neighbour lists (and adds up the decoy sums),
// equal to one whole search.
//
include { EVOSCAN_SEARCH } from '../../../modules/local/search'
include { EVOSCAN_MERGE  } from '../../../modules/local/merge'

workflow SCATTER_SEARCH {
    take:
    ch_embedded // channel: [ val(meta), path(windows), path(embeddings) ]
    chunks      // integer: number of query chunks

    main:
    ch_chunks = ch_embedded.flatMap { meta, windows, embeddings -> (1..chunks).collect { i -> [meta, windows, embeddings, i, chunks] } }
    EVOSCAN_SEARCH(ch_chunks)
    ch_parts = EVOSCAN_SEARCH.out.neighbours.groupTuple(size: chunks)
        .join(ch_embedded.map { meta, windows, _embeddings -> [meta, windows] })
        .map { meta, parts, windows -> [meta, windows, parts, 'neighbours'] }
    EVOSCAN_MERGE(ch_parts)

    emit:
    neighbours = EVOSCAN_MERGE.out.merged // channel: [ val(meta), path(neighbours.h5) ]
    versions   = EVOSCAN_SEARCH.out.versions.mix(EVOSCAN_MERGE.out.versions) // channel: [ val(process), val(tool), val(version) ]
}
